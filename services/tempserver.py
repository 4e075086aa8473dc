"""Prefect's temporary API server for one command, which cannot outlive the command.

With no `PREFECT_API_URL`, Prefect starts a server itself at a flow's first call: too late to overlap
its 5-10 s start with the imports, and as a plain child process that a command killed by SIGKILL or
`timeout` leaves running. Here the command starts this module as its server process before the imports
(`start`), and waits for it before the first flow (the `connect` that `start` returns). The server holds the read end
of a pipe whose only write end is the command's: when the command ends, however it ends, the operating
system closes that end, the server reads end-of-file and shuts down. A pipe, rather than Linux's
PR_SET_PDEATHSIG: it works on macOS and Windows too, and does not depend on which thread started the child.

    python -m services.tempserver      # prints its port, serves until its stdin closes
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Callable

# The address of the command's server, inherited by its children: the registry lock serializes nothing there.
from tasks.tracking.locks import TEMPORARY_API

# Longer than Prefect's own 20 s: on a busy machine the server's start takes longer (issue 14).
STARTUP_TIMEOUT = 120.0
SHUTDOWN_GRACE = 10.0


class ServerDidNotStart(RuntimeError):
    """The temporary server exited or did not answer in time."""


def start() -> Callable[[], None]:
    """Start the temporary server unless Prefect is configured with a server (`PREFECT_API_URL`, from the
    environment or a Prefect profile). Returns `connect`, to call after the imports and before the first
    flow: it waits for the server and points Prefect at it. The server stops when the command exits."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return lambda: None
    server = TemporaryServer()
    # At exit, not at the end of the command's block: Prefect's log and event workers send what they
    # still hold at the interpreter's exit, before atexit handlers run (threading's shut-down).
    atexit.register(server.stop)
    # Its address is known before it answers: processes the command starts from now on (a local Dask
    # cluster's workers, started beside the imports) inherit it.
    os.environ["PREFECT_API_URL"] = os.environ[TEMPORARY_API] = server.url
    # No UI here (and the server is gone after the command): no "View at <url>" link to it in the log.
    os.environ["PREFECT_UI_URL"] = ""
    return server.connect


class TemporaryServer:
    """The command's side: the server process and the write end of its lifeline (its stdin)."""

    def __init__(self) -> None:
        # stdout carries one line, the port the server bound; its log goes to the command's stderr. A
        # process group of its own: Ctrl-C and `timeout` signal the command's whole group, and the command,
        # which Prefect lets report its crash to the server first, would find the server already gone.
        group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
        self.process = subprocess.Popen([sys.executable, "-m", "services.tempserver"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, **group)
        # The server prints its port before its imports: a fraction of a second.
        port = self.process.stdout.readline().strip()
        if not port:
            raise ServerDidNotStart(f"Prefect's temporary server exited (code {self.process.wait()}) before it "
                                    "listened; its messages are above")
        self.url = f"http://127.0.0.1:{int(port)}/api"

    def ready(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """The server's API URL, once its health check answers."""
        deadline = time.monotonic() + timeout
        url = self.url
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerDidNotStart(f"Prefect's temporary server exited with code {self.process.returncode}; "
                                        "its messages are above")
            try:
                with direct.open(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return url
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerDidNotStart(f"Prefect's temporary server did not answer within {timeout:.0f} s (a busy "
                                "machine?); run the command again, or start a server (`prefect server start`) "
                                "and set PREFECT_API_URL")

    def connect(self) -> None:
        """Wait for the server, then make it the API of every Prefect client in this process. Prefect reads
        its settings once, at import; `refresh_global_settings_context` (internal; tests/flows/
        test_tempserver.py fails if it changes) re-reads them from the environment, which any
        subprocess of the command also inherits."""
        from prefect.context import refresh_global_settings_context

        os.environ["PREFECT_API_URL"] = self.ready()
        refresh_global_settings_context()

    def stop(self) -> None:
        """Close the lifeline and wait for the server to shut down (killed if it takes too long)."""
        self.process.stdin.close()
        try:
            self.process.wait(SHUTDOWN_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve() -> None:
    """The server's side: bind a free port (no race with another process picking the same one), print it,
    serve Prefect's API until stdin reaches end-of-file."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)  # first, so that the command never waits on the imports below
    os.dup2(2, 1)  # anything else the server prints goes to stderr: nobody reads the pipe past the port

    def exit_with_command() -> None:
        sys.stdin.buffer.read()  # returns when the command's end of the pipe closes
        # SIGTERM: uvicorn's graceful shut-down once it serves; before that, the default, an immediate exit.
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(SHUTDOWN_GRACE)
        os._exit(1)  # the graceful shut-down hung

    threading.Thread(target=exit_with_command, daemon=True).start()
    import uvicorn
    from prefect.server.api.server import create_app

    # `ephemeral` (internal to Prefect; tests/services/test_tempserver.py fails if it changes): what Prefect's
    # own temporary server runs, no UI and only the services a flow run needs.
    uvicorn.Server(uvicorn.Config(create_app(ephemeral=True, final=True), log_level="error", lifespan="on")).run(
        sockets=[sock])


if __name__ == "__main__":
    serve()
