"""The trainer's files appear complete or not at all, and a full disk is named in one line.

Each output is written under a temporary name and renamed into place, so a crash or a full
disk mid-write leaves the previous version (or nothing) under the final name, never a
truncated file that evaluate and export then misread. A write that fails for want of space
(ENOSPC, a quota, a file-size limit) removes what it left and raises WriteFailed naming the
file, the space it needs and the space free; any other failure propagates unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

_OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# TensorFlow's C++ file layer and h5py report errno in their messages only.
_OUT_OF_SPACE_WORDS = ("No space left on device", "Disk quota exceeded", "File too large",
                       "errno = 28", "errno = 27", "errno = 122")


class WriteFailed(Exception):
    """An output could not be written for want of space; the message says which and how much."""


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{size / 1024:,.0f} KB"


def _out_of_space(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE_ERRNOS:
        return True
    text = getattr(error, "message", None) or str(error)
    return any(words in text for words in _OUT_OF_SPACE_WORDS)


def _free_space(path: str) -> int | None:
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = getattr(error, "message", None) or str(error)
    return next((words for words in _OUT_OF_SPACE_WORDS[:3] if words in text), "out of space")


@contextlib.contextmanager
def reporting(path: str, *, needed_bytes: int | None = None,
              cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Turns an out-of-space failure of the writes inside into WriteFailed naming `path`.

    `cleanup` runs after any failure (a Ctrl-C too), to remove the partial files it left.
    """
    try:
        yield
    except BaseException as error:
        if cleanup is not None:
            cleanup()
        if not isinstance(error, (OSError, tf.errors.OpError)) or not _out_of_space(error):
            raise
        needs = f"it needs about {_megabytes(needed_bytes)}" if needed_bytes else "it needs more"
        free = _free_space(path) if "://" not in path else None
        free_words = "" if free is None else f", {_megabytes(free)} free there"
        raise WriteFailed(
            f"writing {path} failed: {_reason(error)} ({needs}{free_words})") from None


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(tf.errors.OpError, OSError):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def write_bytes(path: str, content: bytes, *, what_for: str | None = None) -> None:
    """Writes `content` to `path` through a temporary name and a rename."""
    temporary = path + ".incomplete"
    with reporting(what_for or path, needed_bytes=len(content),
                   cleanup=lambda: _remove_quietly(temporary)):
        with tf.io.gfile.GFile(temporary, "wb") as handle:
            handle.write(content)
        tf.io.gfile.rename(temporary, path, overwrite=True)


def _finite_or_none(value):
    """JSON has no NaN: a non-finite number becomes null (json.dumps would write bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path: str, content) -> None:
    """Valid JSON (non-finite numbers as null), written atomically."""
    text = json.dumps(_finite_or_none(content), indent=1, allow_nan=False) + "\n"
    write_bytes(path, text.encode("utf-8"))


def save_model(model, path: str) -> None:
    """`model.save(path)` through a temporary .keras file beside it and a rename."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".incomplete-{name}")  # Keras wants the .keras suffix.
    with reporting(path, needed_bytes=variables_bytes(model.weights), cleanup=lambda: _remove_quietly(temporary)):
        model.save(temporary)
        tf.io.gfile.rename(temporary, path, overwrite=True)


def variables_bytes(variables) -> int:
    """What the values of `variables` take on disk, about: their bytes in memory."""
    return sum(math.prod(variable.shape)
               * np.dtype(getattr(variable.dtype, "as_numpy_dtype", variable.dtype)).itemsize
               for variable in variables)


def checkpoint_cleanup(prefix: str) -> Callable[[], None]:
    """Removes what a failed save of checkpoint `prefix` (e.g. .../ckpt-3) left behind.

    TensorFlow writes `ckpt-3_temp/` and then `ckpt-3.index` and `.data-*`; the `checkpoint`
    state file naming it comes last, so none of these is ever the latest checkpoint, but left
    in place they keep filling the disk that just ran out.
    """
    def cleanup() -> None:
        for path in tf.io.gfile.glob(prefix + "_temp*") + tf.io.gfile.glob(prefix + ".*"):
            _remove_quietly(path)

    return cleanup
