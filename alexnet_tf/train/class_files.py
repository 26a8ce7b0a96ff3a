"""labels.txt where TensorFlow reads and writes (local folders, gs://): the trainer's side.

`labels.py` parses and formats class lists; this module only moves them through
`tf.io.gfile`, because --data_dir and --model_dir may be buckets shared by several workers.
"""

from __future__ import annotations

import os

import tensorflow as tf

from alexnet_tf import labels


def read_beside(folder: str) -> tuple[list[str] | None, str]:
    """(the class names of `folder/labels.txt`, its path); names None when there is none."""
    path = os.path.join(folder, labels.LABELS_FILENAME)
    if not tf.io.gfile.exists(path):
        return None, path
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError:
        raise labels.ClassListError(f"{path}: not UTF-8 text") from None
    return labels.parse_labels(text, source=path), path


def keep_with_model(model_dir: str, names: list[str]) -> str:
    """Writes `model_dir/labels.txt` (atomically), or checks the one an earlier run left there:
    resuming a run on records of other classes would train the old fc8 on the wrong labels."""
    existing, path = read_beside(model_dir)
    if existing is not None:
        if existing != list(names):
            raise labels.ClassListError(
                f"{path} lists other classes than the records' labels.txt ({len(existing)} vs "
                f"{len(names)} classes, or another order): this --model_dir belongs to another "
                "data set; choose another --model_dir")
        return path
    temporary = f"{path}.tmp"
    with tf.io.gfile.GFile(temporary, "w") as handle:
        handle.write(labels.format_labels(names))
    tf.io.gfile.rename(temporary, path, overwrite=True)
    return path
