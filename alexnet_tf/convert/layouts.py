"""Finds the images of ImageNet as people actually have it, and labels each one.

Three ImageNet layouts, detected from what is in the input folder, and any class folders
(`folders`, see `convert/folders.py`):

* `extracted`: `train/<wnid>/*.JPEG`, and validation either flat as
  `val/ILSVRC2012_val_%08d.JPEG` (labelled from the ground truth that tensorflow-datasets ships,
  line i = image i) or already sorted into `val/<wnid>/`.
* `kaggle` (the "imagenet-object-localization-challenge" download):
  `ILSVRC/Data/CLS-LOC/{train,val}`, validation labels from `LOC_val_solution.csv` (the first
  token of PredictionString), names from `LOC_synset_mapping.txt`, and bounding boxes from the
  `LOC_*_solution.csv` files.
* `tars`: the original `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`, read in place.

Either split may be missing. Nothing here opens an image: listing only decides what each file
is supposed to be. Anything that cannot be labelled is reported, never dropped silently.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Iterable

from alexnet_tf import imagenet, labels
from alexnet_tf.convert import archives, folders
from alexnet_tf.convert.sources import ImageSource, Rejected, printable

LAYOUTS = ("extracted", "kaggle", "tars", folders.LAYOUT)
_TFDS_GROUND_TRUTH = "tensorflow-datasets' imagenet2012 validation_labels.txt"

# Files that operating systems and download tools leave beside images. They are listed in the
# manifest as ignored rather than reported as broken images.
_CLUTTER_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "icon\r"}
_CLUTTER_EXTENSIONS = {".txt", ".csv", ".xml", ".json", ".md", ".ini", ".db", ".log", ".html", ".htm", ".py", ".sh"}


def is_clutter(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in _CLUTTER_NAMES
        or lowered.startswith(".")  # .DS_Store, AppleDouble "._x.JPEG", editor swap files
        or os.path.splitext(lowered)[1] in _CLUTTER_EXTENSIONS
    )


@dataclasses.dataclass
class Inventory:
    """Everything found in the input: labelled images per split, and what was set aside."""

    layout: str
    sources: dict[str, list[ImageSource]]
    rejected: list[Rejected]
    ignored: list[str]
    class_text: dict[str, str]
    notes: list[str]
    class_names: list[str] = dataclasses.field(default_factory=list)  # label i is class_names[i]


def detect_layout(input_dir: str) -> str:
    """The layout in `input_dir`; a ValueError naming the folder when none or several fit."""
    if not os.path.isdir(input_dir):
        raise ValueError(f"--input_dir={input_dir} is not a folder")
    found = []
    if os.path.isdir(os.path.join(input_dir, "ILSVRC", "Data", "CLS-LOC")):
        found.append("kaggle")
    if any(os.path.isfile(os.path.join(input_dir, name)) for name in (archives.TRAIN_ARCHIVE, archives.VALIDATION_ARCHIVE)):
        found.append("tars")
    if not found or any(os.path.isdir(os.path.join(input_dir, name)) for name in ("train", "val", "validation")):
        kind = folders.detect(input_dir, is_clutter)  # extracted ImageNet, or class folders
        if kind:
            found.append(kind)
    if not found:
        raise ValueError(
            f"--input_dir={input_dir} holds no known layout: expected class folders (RAW/<class>/ or "
            "train/<class>/), ImageNet's train/ and/or val/ folders, "
            f"ILSVRC/Data/CLS-LOC/ (Kaggle), or {archives.TRAIN_ARCHIVE} / {archives.VALIDATION_ARCHIVE}"
        )
    if len(found) > 1:
        raise ValueError(
            f"--input_dir={input_dir} holds several layouts ({', '.join(found)}); choose one with --layout"
        )
    return found[0]


def _scan_folder(folder: str, rejected: list[Rejected], ignored: list[str]) -> Iterable[tuple[str, str]]:
    """(name, path) of every candidate image file directly in `folder`, sorted by name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        rejected.append(Rejected(printable(folder), f"folder unreadable, its images are lost: {error.strerror}"))
        return
    for entry in entries:
        if is_clutter(entry.name):
            ignored.append(printable(entry.path))
            continue
        # Directories inside a class folder, links that lead nowhere or in circles, sockets:
        # the workers' read reports each with its reason, so nothing needs special-casing here.
        yield entry.name, entry.path


def _is_class_folder(name: str, path: str) -> bool:
    return imagenet.is_synset(name) and os.path.isdir(path)


def _list_split_folder(
    split: str, split_dir: str, inventory: Inventory, boxes: dict,
    label_loose_file: Callable[[str], str | None] | None = None, label_source: str = "",
) -> list[ImageSource]:
    """Images in `split_dir/<wnid>/*`, plus loose entries labelled by name when the split allows.

    Validation comes flat (`ILSVRC2012_val_%08d.JPEG`, labelled by `label_loose_file`) or sorted
    into class folders, sometimes both; training only sorted. One pass handles every case, so each
    entry is decided exactly once.
    """
    known = imagenet.synset_to_label()
    sources = []
    for name, path in _scan_folder(split_dir, inventory.rejected, inventory.ignored):
        stem = os.path.splitext(name)[0]
        if imagenet.is_synset(name) and os.path.isdir(path):
            if name not in known:
                inventory.rejected.append(Rejected(
                    printable(path), "folder is not one of the 1000 ILSVRC2012 synsets; its images are not converted"))
                continue
            for image_name, image_path in _scan_folder(path, inventory.rejected, inventory.ignored):
                image_stem = os.path.splitext(image_name)[0]
                sources.append(ImageSource(split, name, image_name, printable(image_path), image_path,
                                           boxes=boxes.get(image_stem, ())))
        elif label_loose_file is None:
            inventory.rejected.append(Rejected(printable(path), f"not inside a <wnid>/ class folder of {split}/"))
        else:
            synset = label_loose_file(name)
            if synset is None:
                inventory.rejected.append(Rejected(printable(path), f"no validation label for this name in {label_source}"))
            else:
                sources.append(ImageSource(split, synset, name, printable(path), path, boxes=boxes.get(stem, ())))
    return sources


def _first_existing(base: str, names: Iterable[str]) -> str | None:
    for name in names:
        path = os.path.join(base, name)
        if os.path.isdir(path):
            return path
    return None


def _list_extracted(input_dir: str, inventory: Inventory) -> None:
    train_dir = _first_existing(input_dir, ["train"])
    val_dir = _first_existing(input_dir, ["val", "validation"])
    if train_dir:
        inventory.sources["train"] = _list_split_folder("train", train_dir, inventory, {})
    if val_dir:
        inventory.sources["validation"] = _list_split_folder(
            "validation", val_dir, inventory, {}, imagenet.validation_synset_for, _TFDS_GROUND_TRUTH)


def _read_solution_csv(path: str) -> tuple[dict[str, str], dict[str, tuple]]:
    """ImageId -> synset (first token) and ImageId -> boxes, from a Kaggle LOC_*_solution.csv."""
    labels, boxes = {}, {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the columns ImageId,PredictionString")
        for row in reader:
            tokens = row["PredictionString"].split()
            if not tokens:
                continue
            labels[row["ImageId"]] = tokens[0]
            found = []
            for start in range(0, len(tokens) - 4, 5):
                try:
                    found.append(tuple(float(value) for value in tokens[start + 1 : start + 5]))
                except ValueError as error:
                    raise ValueError(f"{path}: bad box for {row['ImageId']}: {error}") from error
            boxes[row["ImageId"]] = tuple(found)
    return labels, boxes


def _read_synset_mapping(path: str) -> dict[str, str]:
    names = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            synset, _, text = line.strip().partition(" ")
            if synset:
                names[synset] = text.strip()
    return names


def _list_kaggle(input_dir: str, inventory: Inventory) -> None:
    cls_loc = os.path.join(input_dir, "ILSVRC", "Data", "CLS-LOC")
    mapping = os.path.join(input_dir, "LOC_synset_mapping.txt")
    if os.path.isfile(mapping):
        inventory.class_text.update(_read_synset_mapping(mapping))
    train_dir = os.path.join(cls_loc, "train")
    if os.path.isdir(train_dir):
        train_csv = os.path.join(input_dir, "LOC_train_solution.csv")
        train_boxes = _read_solution_csv(train_csv)[1] if os.path.isfile(train_csv) else {}
        inventory.sources["train"] = _list_split_folder("train", train_dir, inventory, train_boxes)
    val_dir = os.path.join(cls_loc, "val")
    if os.path.isdir(val_dir):
        val_csv = os.path.join(input_dir, "LOC_val_solution.csv")
        if os.path.isfile(val_csv):
            labels, boxes = _read_solution_csv(val_csv)
            label_for, source_name = (lambda name: labels.get(os.path.splitext(name)[0])), "LOC_val_solution.csv"
        else:
            boxes, label_for, source_name = {}, imagenet.validation_synset_for, _TFDS_GROUND_TRUTH
            inventory.notes.append(
                "LOC_val_solution.csv is missing: validation labelled from tensorflow-datasets' ground truth")
        inventory.sources["validation"] = _list_split_folder(
            "validation", val_dir, inventory, boxes, label_for, source_name)


def _list_tars(input_dir: str, inventory: Inventory) -> None:
    train_tar = os.path.join(input_dir, archives.TRAIN_ARCHIVE)
    val_tar = os.path.join(input_dir, archives.VALIDATION_ARCHIVE)
    known = imagenet.synset_to_label()
    if os.path.isfile(train_tar):
        train = []
        for source in archives.index_train_archive(train_tar, inventory.rejected):
            if source.synset not in known:
                inventory.rejected.append(Rejected(source.origin, "class tar is not one of the 1000 ILSVRC2012 synsets"))
            elif is_clutter(source.filename):
                inventory.ignored.append(source.origin)
            else:
                train.append(source)
        inventory.sources["train"] = train
    if os.path.isfile(val_tar):
        validation = []
        for source in archives.index_flat_archive(val_tar, "validation", inventory.rejected):
            synset = imagenet.validation_synset_for(source.filename)
            if is_clutter(source.filename):
                inventory.ignored.append(source.origin)
            elif synset is None:
                inventory.rejected.append(Rejected(source.origin, f"no validation label for this name in {_TFDS_GROUND_TRUTH}"))
            else:
                validation.append(dataclasses.replace(source, synset=synset))
        inventory.sources["validation"] = validation


def list_images(input_dir: str, layout: str = "auto", *, labels_file: str | None = None,
                validation_fraction: float | None = None) -> Inventory:
    """Lists and labels every candidate image in `input_dir`, sorted for a deterministic plan."""
    if layout == "auto":
        layout = detect_layout(input_dir)
    elif layout not in LAYOUTS:
        raise ValueError(f"--layout={layout} is not one of auto, {', '.join(LAYOUTS)}")
    elif not os.path.isdir(input_dir):
        raise ValueError(f"--input_dir={input_dir} is not a folder")
    inventory = Inventory(layout, {}, [], [], {}, [])
    if layout == folders.LAYOUT:
        folders.list_folders(input_dir, inventory, _scan_folder, labels_file=labels_file,
                             validation_fraction=validation_fraction)
    else:
        for flag, value in (("--labels_file", labels_file), ("--validation_fraction", validation_fraction)):
            if value is not None:
                raise ValueError(f"{flag} applies to class folders (--layout=folders), not to the "
                                 f"{layout} ImageNet layout, whose labels are ImageNet's")
        inventory.class_names = labels.imagenet_labels()
        {"extracted": _list_extracted, "kaggle": _list_kaggle, "tars": _list_tars}[layout](input_dir, inventory)
    for split in list(inventory.sources):
        if not inventory.sources[split]:
            del inventory.sources[split]
            inventory.notes.append(f"the {split} folder holds no images: treated as missing")
            continue
        # Validation keeps ILSVRC's own order (by file name); training is shuffled later anyway.
        key = (lambda s: (s.filename, s.origin)) if split == "validation" else ImageSource.sort_key
        inventory.sources[split].sort(key=key)
    for synset in {source.synset for split in inventory.sources.values() for source in split}:
        inventory.class_text.setdefault(synset, imagenet.class_name_for(synset))
    return inventory
