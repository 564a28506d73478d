"""Native code's writes to the terminal, kept from a command-line user."""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["native_stderr_silenced"]


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to file descriptor 2 to /dev/null meanwhile.

    The predictor's runtimes write native start-up lines (LiteRT's XNNPACK
    delegate, TensorFlow's absl and oneDNN lines, which ignore
    ``TF_CPP_MIN_LOG_LEVEL``); a command-line user should see svdk's lines only.
    Python's own writes (warnings, log records such as the model source
    that was not used) still reach the terminal through ``sys.stderr``,
    which points at the real stderr meanwhile.
    """
    if os.environ.get("SVDK_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr: nothing to silence
        yield
        return
    python_stderr = sys.stderr
    try:
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
