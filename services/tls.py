"""TLS for the team stack's servers (`stack up --tls`): uvicorn, which serves both, speaks it with a
certificate and key the user gives (`--cert`, `--key`), or with a certificate made for this host on the
first start: a certificate authority of the stack's own signs a server certificate for the host's names
and loopback, kept in `.stack/tls/` (the key 0600; the CA's key is dropped once it has signed, so nobody
can make another certificate that trusts it). Clients trust the file `trust` (`.stack/tls/ca.pem`): a
copy of the stack's own CA, or of the given certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
from pathlib import Path

from services import credentials
from tasks.errors import InputError, Problem

FOLDER, CA, OWN_CA, CERT, KEY = "tls", "ca.pem", "stack-ca.pem", "server.pem", "server-key.pem"
DAYS = 825  # the longest validity browsers accept for a server certificate


def trust(home: Path) -> Path:
    """The certificate clients verify the servers against."""
    return Path(home) / FOLDER / CA


def host_names(host: str) -> list[str]:
    """The names a certificate made here covers: this machine's, loopback's, and `host` if it is one."""
    names = {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"}
    if host not in ("0.0.0.0", "::"):
        names.add(host)
    return sorted(names)


def make_certificate(folder: Path, names: list[str]) -> None:
    """A CA (stack-ca.pem) and a server certificate it signs for `names` (server.pem, server-key.pem) in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lstm-pipeline stack CA ({socket.getfqdn()})")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    alternatives = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=DAYS))
              .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials.write_private(folder / KEY, server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
    (folder / CERT).write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / OWN_CA).write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def prepare(home: Path, host: str, cert: str | None, key: str | None) -> tuple[Path, Path]:
    """The certificate and key the servers use: the given pair (checked to be one, and its certificate
    copied to `trust`), else the one made here on the first start (and kept)."""
    folder = Path(home) / FOLDER
    if cert or key:
        if not (cert and key):
            raise InputError([Problem("--cert and --key go together", "pass both, or neither for a certificate made here")])
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise InputError([Problem(f"--cert {cert} --key {key}: not a certificate and its key in PEM ({exc})",
                                      "pass the server's certificate (with its chain up to the root) and its private key")]) from None
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(cert, folder / CA)
        return Path(cert).resolve(), Path(key).resolve()
    if not all((folder / name).exists() for name in (OWN_CA, CERT, KEY)):
        make_certificate(folder, host_names(host))
    shutil.copyfile(folder / OWN_CA, folder / CA)
    return (folder / CERT).resolve(), (folder / KEY).resolve()
