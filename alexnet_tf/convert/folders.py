"""Your own images: one folder per class, named as you like (`--layout=folders`).

Two forms, as `keras.utils.image_dataset_from_directory` and TFDS `ImageFolder` read them:

    RAW/<class>/*                                   split by --validation_fraction, if given
    RAW/train/<class>/*  [RAW/val/<class>/*]        (or validation/)

Class names are the folder names as they are (spaces, capitals, accents, digits). Label i is
line i of the class list: the names in code-point order (`labels.sorted_class_names`), or the
order of `--labels_file`. A folder that the labels file does not list is not converted and is
reported with its images' count, like any other skipped input: a typo in the file must not
become a silently empty class, and stopping would make a user edit the file to convert a
subset on purpose.

`--validation_fraction` holds out each image whose `<class>/<file name>` hashes below F: the same
images whatever the worker count or listing order, and adding images never moves old ones
between the splits. The class name is part of what is hashed so that classes whose files share
names (`001.jpg`, `002.jpg`, ... in every folder) are still held out independently; without it
every class would lose the very same file names.
"""

from __future__ import annotations

import hashlib
import os

from alexnet_tf import imagenet, labels
from alexnet_tf.convert.sources import ImageSource, Rejected, printable

LAYOUT = "folders"
SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation")}


def _subfolders(folder: str, is_clutter) -> list[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return []
    return [entry.name for entry in entries if not is_clutter(entry.name) and entry.is_dir()]


def _split_dirs(input_dir: str) -> dict[str, str]:
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if os.path.isdir(os.path.join(input_dir, name)):
                found[split] = os.path.join(input_dir, name)
                break
    return found


def _mixed_error(input_dir: str, synsets: list[str], others: list[str]) -> ValueError:
    return ValueError(
        f"--input_dir={input_dir} mixes ImageNet synset folders ({', '.join(synsets[:2])}) and "
        f"other class folders ({', '.join(printable(name) for name in others[:2])}): pass "
        "--layout=folders to label every folder by its name, or --layout=extracted for "
        "ImageNet's labels (the other folders are then skipped and reported)"
    )


def detect(input_dir: str, is_clutter) -> str | None:
    """"folders", "extracted" (train/ or val/ of synset folders), or None; a ValueError when
    synset and other class folders are mixed, or synset folders sit directly in RAW/."""
    splits = _split_dirs(input_dir)
    if splits:
        names = [name for folder in splits.values() for name in _subfolders(folder, is_clutter)]
    else:
        names = _subfolders(input_dir, is_clutter)
        if not names:
            return None
    synsets = [name for name in names if imagenet.is_synset(name)]
    others = [name for name in names if not imagenet.is_synset(name)]
    if synsets and others:
        raise _mixed_error(input_dir, synsets, others)
    if others:
        return LAYOUT
    if not splits:
        raise ValueError(
            f"--input_dir={input_dir} holds ImageNet synset folders ({', '.join(synsets[:2])}) "
            "directly: put them under train/ for ImageNet's labels, or pass --layout=folders to "
            "label them by their names in sorted order"
        )
    return "extracted"


def held_out(class_name: str, relative_path: str, fraction: float) -> bool:
    """Whether --validation_fraction takes this image: the hash of `class/path`, read as a
    number in [0, 1), is below the fraction. Depends on nothing but the names."""
    key = f"{class_name}/{relative_path}".encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def _class_folders(split_dir: str, split: str, inventory, scan_folder) -> dict[str, str]:
    """class name -> folder, for the subfolders of `split_dir`; loose files are reported."""
    found = {}
    for name, path in scan_folder(split_dir, inventory.rejected, inventory.ignored):
        if not os.path.isdir(path):
            inventory.rejected.append(Rejected(printable(path), f"not inside a class folder of {printable(split_dir)}"))
            continue
        reason = labels.unwritable_reason(name)
        if reason:
            inventory.rejected.append(Rejected(
                printable(path), f"a class folder's name must be a line of labels.txt ({reason}); "
                "rename the folder to convert its images"))
            continue
        found[name] = path
    return found


def list_folders(input_dir: str, inventory, scan_folder, *, labels_file: str | None = None,
                 validation_fraction: float | None = None) -> None:
    """Fills `inventory` with the images of every class folder, labelled by the class list."""
    splits = _split_dirs(input_dir)
    if validation_fraction is not None and not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"--validation_fraction={validation_fraction} must be between 0 and 1")
    if validation_fraction is not None and "validation" in splits:
        raise ValueError(
            f"--validation_fraction={validation_fraction} and a validation folder "
            f"({splits['validation']}): use one or the other")
    if splits:
        folders = {split: _class_folders(path, split, inventory, scan_folder) for split, path in splits.items()}
        for _, path in scan_folder(input_dir, [], inventory.ignored):
            if path not in splits.values():
                inventory.rejected.append(Rejected(printable(path), "not under train/ or val/: not converted"))
    else:
        folders = {"train": _class_folders(input_dir, "train", inventory, scan_folder)}

    names = sorted({name for found in folders.values() for name in found})
    if labels_file:
        try:
            class_names = labels.read_labels(labels_file)
        except labels.ClassListError as error:
            raise ValueError(f"--labels_file: {error}") from None
        missing = [name for name in class_names if name not in names]
        if missing:
            inventory.notes.append(f"--labels_file lists {len(missing)} classes with no folder: "
                                   f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    else:
        class_names = labels.sorted_class_names(names)
    inventory.class_names = list(class_names)
    listed = set(class_names)

    for split, found in folders.items():
        sources = []
        for name, folder in found.items():
            images = [(image_name, image_path) for image_name, image_path
                      in scan_folder(folder, inventory.rejected, inventory.ignored)]
            if name not in listed:
                inventory.rejected.append(Rejected(
                    printable(folder), f"class folder not listed in --labels_file={labels_file}: "
                    f"its {len(images)} files are not converted"))
                continue
            for image_name, image_path in images:
                target = split
                if validation_fraction is not None and held_out(name, image_name, validation_fraction):
                    target = "validation"
                sources.append(ImageSource(target, name, image_name, printable(image_path), image_path))
        for source in sources:
            inventory.sources.setdefault(source.split, []).append(source)
    for split in splits:
        inventory.sources.setdefault(split, [])
    inventory.class_text.update({name: name for name in class_names})
