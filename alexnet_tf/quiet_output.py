"""Keeps the lines of TensorFlow that a user cannot act on out of our commands' output.

Two sources, both measured with TF 2.21 (pip wheel) and Keras 3:

- TensorFlow's Python code logs routine INFO lines through absl and its "tensorflow" logger:
  "Sharding callback duration: N microseconds" at every checkpoint save, and on export the
  signature input renames, "Assets written to" (twice: the "tensorflow" logger's own handler,
  then absl's) and "Writing fingerprint to". `quiet_library_info` drops INFO and DEBUG records
  logged from TensorFlow's and Keras's own files; their warnings and errors, and every line of
  ours, still pass. TF_CPP_MIN_LOG_LEVEL cannot do this: it governs the C++ lines only.
- `import tensorflow` prints its start-up lines (README, "Troubleshooting") and then, when it
  loads the profiler plugin, which carries its own copy of absl and of the CUDA stub, the first
  two of them again. `import_tensorflow_once` imports TensorFlow with stderr going to a
  temporary file and then writes what it caught with each repeated start-up line left out;
  every other line, the first copy of each start-up line included, is written as it was.
  (Lines of a crash inside the import itself would be lost with the process.)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import tempfile

# absl's C++ prefix "I0000 00:00:1796268591.319905    7209 ": severity, date, time, thread.
_ABSL_PREFIX = re.compile(rb"^[IWEF]\d{4} [\d:.]+\s+\d+ ")
_ABSL_NOT_INITIALIZED = b"WARNING: All log messages before absl::InitializeLog()"


def _package_folders(*names: str) -> tuple[str, ...]:
    folders = []
    for name in names:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            folders.append(os.path.realpath(folder) + os.sep)
    return tuple(folders)


class _LibraryInfo(logging.Filter):
    """Refuses INFO and DEBUG records logged from the files of the given packages."""

    def __init__(self, folders: tuple[str, ...]):
        super().__init__()
        self.folders = folders

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not os.path.realpath(record.pathname).startswith(self.folders)


def quiet_library_info() -> None:
    """Drops TensorFlow's and Keras's INFO lines from this process's logs (idempotent)."""
    library_info = _LibraryInfo(_package_folders("tensorflow", "keras"))
    for name in ("absl", "tensorflow"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _LibraryInfo) for existing in logger.filters):
            logger.addFilter(library_info)


def without_repeated_startup_lines(text: bytes) -> bytes:
    """`text` less each start-up line that already appeared in it (timestamps aside)."""
    seen, kept = set(), []
    for line in text.splitlines(keepends=True):
        if line.startswith(_ABSL_NOT_INITIALIZED) or _ABSL_PREFIX.match(line):
            key = _ABSL_PREFIX.sub(b"", line).strip()
            if key in seen:
                continue
            seen.add(key)
        kept.append(line)
    return b"".join(kept)


def import_tensorflow_once() -> None:
    """Imports TensorFlow, printing each of its start-up lines once (see the docstring)."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  (the import is the point)
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            caught.seek(0)
            remaining = memoryview(without_repeated_startup_lines(caught.read()))
            while remaining:
                remaining = remaining[os.write(2, remaining):]


def quiet_tensorflow() -> None:
    """Both of the above: call first thing in a command's module, before importing TF."""
    import_tensorflow_once()
    quiet_library_info()
