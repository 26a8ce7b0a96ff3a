"""Checks on `--output_dir` that turn a bad choice into one line instead of a traceback.

An output folder inside a split of the input works once; the rerun then lists its own shards
as images of that split, reports them as broken, and writes another manifest. A folder that is
a file, lies under a file or cannot be written fails in `os.makedirs` with an OSError whose
traceback names no flag.
"""

from __future__ import annotations

import errno
import os

# Where each layout reads images from, relative to --input_dir. A layout not listed here (a new
# one) reads the whole folder.
_SPLIT_FOLDERS = {
    "extracted": ("train", "val", "validation"),
    "kaggle": (os.path.join("ILSVRC", "Data", "CLS-LOC", "train"),
               os.path.join("ILSVRC", "Data", "CLS-LOC", "val")),
    "tars": (),
}


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def input_folder_holding(input_dir: str, output_dir: str, layout: str) -> str | None:
    """The folder of the input that `output_dir` lies in and that the layout lists images
    from, or None when the output is outside every such folder."""
    output = os.path.realpath(output_dir)
    relative = _SPLIT_FOLDERS.get(layout)
    folders = [input_dir] if relative is None else [os.path.join(input_dir, name) for name in relative]
    for folder in folders:
        if _inside(output, os.path.realpath(folder)):
            return folder
    return None


def refusal_if_inside_input(input_dir: str, output_dir: str, layout: str) -> str | None:
    """Why `output_dir` is refused as lying inside an input split, or None if it is not."""
    folder = input_folder_holding(input_dir, output_dir, layout)
    if folder is None:
        return None
    return (f"--output_dir={output_dir} is inside {folder}, which the {layout} layout of "
            f"--input_dir={input_dir} reads images from: a rerun would list the shards as "
            "images. Refused; choose an output folder outside it")


def explain_os_error(output_dir: str, error: OSError) -> str:
    """One line saying why `output_dir` cannot be prepared."""
    where = error.filename or output_dir
    if error.errno == errno.EEXIST or (isinstance(error, FileExistsError) and os.path.isfile(where)):
        return f"--output_dir={output_dir} is a file, not a folder"
    if error.errno == errno.ENOTDIR:
        return f"--output_dir={output_dir} lies under a file, not a folder ({where})"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"--output_dir={output_dir} is not writable ({error.strerror}: {where})"
    return f"--output_dir={output_dir} cannot be prepared ({error.strerror}: {where})"
