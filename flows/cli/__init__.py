"""`lstm-pipeline`: the command line, one module per group of commands (training, sweeps, models, stack)
on the app of `flows/cli/app.py`."""

from __future__ import annotations

import gc
import sys

# Each module registers its commands on `app`; in this order `--help` lists them.
from flows.cli import training  # noqa: F401, I001
from flows.cli import sweeps  # noqa: F401
from flows.cli import models  # noqa: F401
from flows.cli import stack  # noqa: F401
from flows.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        sys.exit(app())
    finally:
        # The exit frees what is alive now; frozen, it is spared the interpreter's last garbage collection,
        # which takes 1-3 s once TensorFlow is loaded. (atexit handlers still run: servers stop, logs flush.)
        gc.freeze()
