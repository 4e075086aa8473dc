"""What a command prints: the pipeline's own lines, without the libraries' notices that say nothing
about the user's data or run. `lstm-pipeline --verbose` leaves every library message as it is.

Each silenced message is named here with why it is noise; what is a cause in this code is fixed where it
arises instead (Keras' "Your input ran out of data": tasks/prepare/window.py declares its batch count)."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator

# TensorFlow 2.21 writes these from C++ while it is imported, ignoring TF_CPP_MIN_LOG_LEVEL: absl's note
# that logging is not initialized yet, and the notice that oneDNN kernels are on (the default on CPUs
# with AVX-512 or AMX; an AMD EPYC without AVX-512 prints neither unless TF_ENABLE_ONEDNN_OPTS=1).
NATIVE_NOISE = re.compile(r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on")
# Keras traces its predict function once per model and batch shape; a run forecasts with the trained
# model, the packaged one and the gate's loaded versions, so TensorFlow's counter reaches its warning
# threshold although nothing is traced more than once per model and shape.
RETRACING = "triggered tf.function retracing"

_verbose = False


def setup(verbose: bool) -> None:
    """Quiet the known notices, unless `verbose`. Call before the libraries are imported."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    # MLflow's per-download progress bars, and its INFO lines (store creation, signature checks).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("tensorflow").addFilter(lambda record: RETRACING not in record.getMessage())
    # MLflow registers its local-file dataset source twice (for the schemes "" and "file"), so resolving
    # any local path finds two identical candidates and warns; either one records the same source.
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")


class _Explained(logging.Filter):
    """Keeps Prefect's one-line log of a failure that the command explains itself (bad input, a fit
    whose loss diverged, a tracking server that does not answer, Ctrl-C), without its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tasks.errors import FitFailed, InputError, NothingFinished
        from tasks.tracking.store import (
            unreachable,  # imports MLflow: only for a record with an error
        )

        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (isinstance(error, (InputError, NothingFinished, FitFailed, KeyboardInterrupt))
                                  or unreachable(error)):
            record.exc_info = record.exc_text = None
        return True


def explained_without_traceback() -> None:
    """In this process, Prefect logs the failures that the pipeline explains without a traceback."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_Explained())


def verbose() -> bool:
    return _verbose


@contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Around an import of TensorFlow: what C++ writes to the process's stderr (file descriptor 2) is
    captured, then passed on without the NATIVE_NOISE lines; everything else, in order."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not NATIVE_NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def import_tensorflow() -> None:
    """Import TensorFlow now, its notices filtered: every command that trains or forecasts needs it, and
    a module that imports it lazily (inside a task) would let them through."""
    with native_noise_filtered():
        import tensorflow  # noqa: F401
