"""A data set's class list: label i is line i of `labels.txt`.

One file travels with the data and the model: the converter writes `OUT/labels.txt`, the
trainer copies it to `model_dir/labels.txt` beside `model.keras`, and export, predict and
evaluate read it from beside the model they are given. ImageNet's list (tensorflow-datasets'
synset order) is one instance of it, not a special case. TensorFlow-free, like `imagenet.py`:
the converter's workers and the CLIs import it.

Order rule for class folders: names sorted by Unicode code point (Python's `sorted`), as
`keras.utils.image_dataset_from_directory` and TFDS `ImageFolder` sort them, so a class list
built here matches the one those tools would build from the same folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from alexnet_tf import imagenet

LABELS_FILENAME = "labels.txt"


class ClassListError(ValueError):
    """A class list that cannot be read or does not fit the data or model it is used with."""


def sorted_class_names(names: Iterable[str]) -> list[str]:
    """The label order of class folders: code-point order, duplicates refused."""
    names = list(names)
    if len(set(names)) != len(names):
        raise ClassListError("a class name appears twice")
    return sorted(names)


def imagenet_labels() -> list[str]:
    """ILSVRC2012's 1000 synsets in label order (tensorflow-datasets' labels.txt)."""
    return list(imagenet.synsets())


def parse_labels(text: str, *, source: str, json_list: bool = False) -> list[str]:
    """Class names from a labels file's text: one a line (or a JSON list), none blank or twice."""
    if json_list:
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise ClassListError(f"{source}: not valid JSON ({error})") from None
        if not isinstance(names, list) or not all(
            isinstance(name, str) and name.strip() for name in names
        ):
            raise ClassListError(f"{source}: expected a JSON list of non-empty class names")
        names = [name.strip() for name in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ClassListError(f"{source}: the class list is empty")
    seen: set[str] = set()
    for line_number, name in enumerate(names, start=1):
        if name in seen:
            raise ClassListError(f"{source}: the class list names {name!r} twice (entry {line_number})")
        seen.add(name)
    return names


def read_labels(path: str) -> list[str]:
    """The class names in label order from `path` (text, one a line; or a .json list)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise ClassListError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise ClassListError(f"{path}: cannot read the class list: {error.strerror}") from None
    return parse_labels(text, source=path, json_list=path.endswith(".json"))


def unwritable_reason(name: str) -> str | None:
    """Why `name` cannot be a line of labels.txt (and so a class), or None if it can."""
    if not name.strip() or "\n" in name or "\r" in name or name != name.strip():
        return "blank, a line break, or leading/trailing spaces"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a file name that was not UTF-8 (surrogate escapes)
        return "not UTF-8"
    return None


def format_labels(names: Sequence[str]) -> str:
    for name in names:
        reason = unwritable_reason(name)
        if reason:
            raise ClassListError(f"class name {name!r} cannot be written one a line ({reason})")
    return "".join(f"{name}\n" for name in names)


def write_labels(path: str, names: Sequence[str]) -> str:
    """Writes `names` one a line, atomically (a reader never sees half a file); returns path.

    The temporary file has a fixed name, so one left by a killed writer is overwritten and
    renamed away by the next write instead of staying behind.
    """
    text = format_labels(list(names))
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def resolve_num_classes(flag_value: int | None, names: Sequence[str] | None, *, source: str,
                        flag: str = "--num_classes") -> int:
    """The model's class count: the class list's length, which `flag_value` may only repeat.

    Without a class list (records from before labels.txt) the flag decides, and ImageNet's
    1000 is the default.
    """
    if names is None:
        return imagenet.NUM_CLASSES if flag_value is None else flag_value
    if flag_value is not None and flag_value != len(names):
        raise ClassListError(
            f"{flag}={flag_value} contradicts {source}, which lists {len(names)} classes "
            f"(leave {flag} out to take it from there)"
        )
    return len(names)


def labels_beside(path: str) -> str | None:
    """`labels.txt` in the folder `path` names, or beside the file it names; None if absent."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    candidate = os.path.join(folder, LABELS_FILENAME)
    return candidate if os.path.isfile(candidate) else None


__all__ = [
    "ClassListError",
    "LABELS_FILENAME",
    "format_labels",
    "imagenet_labels",
    "labels_beside",
    "parse_labels",
    "read_labels",
    "resolve_num_classes",
    "sorted_class_names",
    "unwritable_reason",
    "write_labels",
]
