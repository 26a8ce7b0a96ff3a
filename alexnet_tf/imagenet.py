"""The facts of ILSVRC2012 that every stage needs, kept in one place.

The class list and the validation ground truth come from the files that tensorflow-datasets
ships for its `imagenet2012` builder (`labels.txt`: the 1000 synsets in the order that defines
label ids 0..999; `validation_labels.txt`: line i is the synset of ILSVRC2012_val_{i:08d}.JPEG).
We read those files straight from the installed package instead of importing
`tensorflow_datasets`, whose import pulls in TensorFlow and takes seconds: the converter's
worker processes and the CLI tools must start fast.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re

import numpy as np

NUM_CLASSES = 1000
NUM_VALIDATION_IMAGES = 50000

# Mean RGB value of the ImageNet training set, in 0..255 (paper, section 2: "subtracting the
# mean activity over the training set from each pixel"; the per-channel form used by most ports).
RGB_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)

# Principal components of the RGB pixel values over the training set (paper, section 4.1,
# "altering the intensities of the RGB channels"). Eigenvalues are for pixels scaled to
# 0..1; each *column* of the matrix is an eigenvector. Values as published with
# fb.resnet.torch, the de facto reference for this augmentation.
PCA_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
PCA_EIGENVECTORS = np.array(
    [
        [-0.5675, 0.7192, 0.4009],
        [-0.5808, -0.0045, -0.8140],
        [-0.5836, -0.6948, 0.4203],
    ],
    dtype=np.float32,
)
# Standard deviation of the random PCA coefficients (paper, section 4.1).
PCA_NOISE_STDDEV = 0.1

_SYNSET_PATTERN = re.compile(r"^n\d{8}$")
_VALIDATION_NAME_PATTERN = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)


def _tfds_package_dir() -> str:
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "tensorflow-datasets is not installed; it provides the ImageNet label files "
            "(pip install tensorflow-datasets)"
        )
    return list(spec.submodule_search_locations)[0]


def _tfds_file(*parts: str) -> str:
    path = os.path.join(_tfds_package_dir(), *parts)
    if not os.path.isfile(path):
        raise RuntimeError(f"tensorflow-datasets has no {path}; is the installation complete?")
    return path


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


@functools.lru_cache(maxsize=None)
def synsets() -> tuple[str, ...]:
    """The 1000 WordNet ids; position i is label i (before any --label_offset)."""
    names = tuple(_read_lines(_tfds_file("datasets", "imagenet2012", "labels.txt")))
    if len(names) != NUM_CLASSES or not all(_SYNSET_PATTERN.match(n) for n in names):
        raise RuntimeError("tensorflow-datasets' imagenet2012 labels.txt is not 1000 synsets")
    return names


@functools.lru_cache(maxsize=None)
def synset_to_label() -> dict[str, int]:
    return {synset: index for index, synset in enumerate(synsets())}


@functools.lru_cache(maxsize=None)
def validation_synsets() -> tuple[str, ...]:
    """Ground truth of the 50,000 validation images: entry i-1 is ILSVRC2012_val_{i:08d}."""
    path = _tfds_file("datasets", "imagenet2012", "validation_labels.txt")
    labels = tuple(_read_lines(path))
    if len(labels) != NUM_VALIDATION_IMAGES:
        raise RuntimeError(f"{path} has {len(labels)} lines, expected {NUM_VALIDATION_IMAGES}")
    return labels


def validation_synset_for(filename: str) -> str | None:
    """The ground-truth synset of a flat validation file, or None if the name is not one."""
    match = _VALIDATION_NAME_PATTERN.match(os.path.basename(filename))
    if not match:
        return None
    index = int(match.group(1))
    if not 1 <= index <= NUM_VALIDATION_IMAGES:
        return None
    return validation_synsets()[index - 1]


@functools.lru_cache(maxsize=None)
def class_names() -> tuple[str, ...]:
    """Human-readable names ("tench, Tinca tinca") in label order.

    tensorflow-datasets ships them as `IMAGENET_LABELS_LIST` in its SI-Score module; we read the
    literal with `ast` rather than importing the module (see the module docstring for why).
    """
    path = _tfds_file("datasets", "siscore", "labels.py")
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "IMAGENET_LABELS_LIST"
            for target in node.targets
        ):
            names = tuple(ast.literal_eval(node.value))
            if len(names) == NUM_CLASSES:
                return names
    raise RuntimeError(f"{path} does not hold the 1000 ImageNet class names")


def class_name_for(synset: str) -> str:
    """The human-readable name of a synset; the synset itself if it is not an ILSVRC class."""
    label = synset_to_label().get(synset)
    return class_names()[label] if label is not None else synset


def is_synset(name: str) -> bool:
    return bool(_SYNSET_PATTERN.match(name))
