"""What a command prints (services/console.py): TensorFlow's C++ start-up notices left out, everything else
that reaches the process's stderr passed on in order; all of it with --verbose."""

import os
import subprocess
import sys

import pytest

from services import console

NOISE = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
         b"I0000 00:00:1795909065.557400    6882 port.cc:153] oneDNN custom operations are on. You may see ...\n"]


@pytest.mark.parametrize("verbose", [False, True])
def test_native_noise_is_left_out_unless_verbose(capfd, monkeypatch, verbose):
    monkeypatch.setattr(console, "_verbose", verbose)
    with console.native_noise_filtered():
        os.write(2, NOISE[0])
        os.write(2, b"error: a real problem from C++\n")
        os.write(2, NOISE[1])
    err = capfd.readouterr().err
    expected = [NOISE[0].decode(), "error: a real problem from C++\n", NOISE[1].decode()]
    assert err == "".join(expected if verbose else expected[1:2])


def test_importing_tensorflow_prints_nothing_unless_verbose():
    """The notices TF_CPP_MIN_LOG_LEVEL does not reach (TensorFlow 2.21), from a real import. oneDNN is
    forced on: by default TensorFlow enables it (and prints its notice) only on some CPUs."""
    code = "import sys; from services import console; console.setup(sys.argv[1] == 'v'); console.import_tensorflow()"
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
    quiet = subprocess.run([sys.executable, "-c", code, "q"], capture_output=True, text=True, env=env, timeout=300)
    loud = subprocess.run([sys.executable, "-c", code, "v"], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stderr == "" and "oneDNN" in loud.stderr
