"""model_info.json: the facts about a model's weights that its users need, saved beside it.

How an image must be prepared for a model (crop size, resize filter) is a fact about its
weights, as torchvision keeps `transforms` with each set of weights. The trainer and the
importer write this record next to `model.keras`; the exporter reads it so that the served
graph prepares images as the weights expect. A model without the record is treated as one
trained here (the "paper" preprocessing at the model's input size), as before the record
existed. TensorFlow-free: the CLIs read it before they import TensorFlow.

    {"format_version": 1, "variant": "single", "image_size": 224, "minimum_image_size": 63,
     "num_classes": 1000, "parameters": 61100840, "labels_file": "labels.txt",   # or null
     "preprocessing": {"name": "torchvision", "resize_shorter_side": 256, "crop_size": 224},
     "source": {"format": "torchvision", "file": "alexnet-owt-7be5be79.pth", "sha256": "..."}}
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

FILENAME = "model_info.json"
FORMAT_VERSION = 1

# "paper": what training here evaluates with (data.preprocess_for_eval): shorter side to 256
#   (or the trainer's --resize_side, at most 256) with bilinear resizing without antialiasing,
#   the centre crop at floor offsets.
# "torchvision": torchvision's ImageNet eval transform (Resize(256), CenterCrop(224) on a PIL
#   image): antialiased bilinear to a shorter side of 256, the longer side truncated, rounded
#   back to 8 bits as PIL does, the centre crop at round-half-even offsets.
# "paper" may also say "records_resize": {"shorter_side": S, "center_crop": bool,
#   "jpeg_quality": Q} when the model trained on records the converter made with
#   --resize_shorter_side=S [--center_crop] --jpeg_quality=Q: images are first scaled and
#   stored as the converter did (antialiased Lanczos, 8 bits, JPEG at Q; data/records_resize.py),
#   so served pixels look like the trained ones.
PREPROCESSING_NAMES = ("paper", "torchvision")
RECORDS_RESIZE = "records_resize"
_READABLE = 0o644  # mkstemp makes files private (0600); a model's files are meant to be shared


class ModelInfoError(ValueError):
    """A model_info.json that cannot be read or does not fit its model."""


def paper_preprocessing(
    crop_size: int, records_options: dict | None = None, resize_shorter_side: int = 256
) -> dict:
    """The paper's preprocessing; `records_options` (manifest.json's "options" of the records
    the model trained on) adds the converter's resize when the records were resized;
    `resize_shorter_side` is the trainer's --resize_side (the paper's 256)."""
    preprocessing = {"name": "paper", "resize_shorter_side": int(resize_shorter_side),
                     "crop_size": int(crop_size)}
    shorter_side = (records_options or {}).get("resize_shorter_side")
    if shorter_side:
        preprocessing[RECORDS_RESIZE] = {
            "shorter_side": int(shorter_side),
            "center_crop": bool(records_options.get("center_crop")),
            "jpeg_quality": int(records_options.get("jpeg_quality") or 95),
        }
    return preprocessing


def torchvision_preprocessing(crop_size: int = 224, resize_shorter_side: int = 256) -> dict:
    return {
        "name": "torchvision",
        "resize_shorter_side": int(resize_shorter_side),
        "crop_size": int(crop_size),
    }


def make_info(
    *,
    variant: str,
    image_size: int,
    minimum_image_size: int,
    num_classes: int,
    parameters: int,
    preprocessing: dict,
    labels_file: str | None = None,
    source: dict | None = None,
) -> dict[str, Any]:
    info = {
        "format_version": FORMAT_VERSION,
        "variant": variant,
        "image_size": int(image_size),
        "minimum_image_size": int(minimum_image_size),
        "num_classes": int(num_classes),
        "parameters": int(parameters),
        "labels_file": labels_file,
        "preprocessing": dict(preprocessing),
    }
    if source:
        info["source"] = dict(source)
    check_info(info, source_name="model info")
    return info


def for_network(
    network, image_size: int, preprocessing: dict | None = None
) -> dict[str, Any]:
    """The record of a `build_alexnet` network; "paper" preprocessing unless told otherwise."""
    from alexnet_tf.model import alexnet as model

    variant = "paper" if network.name == "alexnet" else "single"
    return make_info(
        variant=variant, image_size=image_size,
        minimum_image_size=model.MINIMUM_IMAGE_SIZE[variant],
        num_classes=network.output_shape[-1], parameters=network.count_params(),
        preprocessing=preprocessing or paper_preprocessing(image_size),
    )


def check_info(info: Any, *, source_name: str) -> dict:
    """The record itself if it is one this version understands; else a ModelInfoError."""
    if not isinstance(info, dict):
        raise ModelInfoError(f"{source_name}: expected a JSON object")
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelInfoError(
            f"{source_name}: format_version {info.get('format_version')!r}, this alexnet_tf "
            f"reads {FORMAT_VERSION}"
        )
    preprocessing = info.get("preprocessing")
    if not isinstance(preprocessing, dict) or preprocessing.get("name") not in PREPROCESSING_NAMES:
        raise ModelInfoError(
            f"{source_name}: preprocessing must name one of {PREPROCESSING_NAMES}, got "
            f"{preprocessing!r}"
        )
    for key in ("resize_shorter_side", "crop_size"):
        value = preprocessing.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelInfoError(f"{source_name}: preprocessing.{key} must be a positive integer")
    if preprocessing["crop_size"] > preprocessing["resize_shorter_side"]:
        raise ModelInfoError(f"{source_name}: the crop is larger than the resized image")
    if RECORDS_RESIZE in preprocessing:
        _check_records_resize(preprocessing, source_name)
    return info


def _check_records_resize(preprocessing: dict, source_name: str) -> None:
    records_resize = preprocessing[RECORDS_RESIZE]
    where = f"{source_name}: preprocessing.{RECORDS_RESIZE}"
    if preprocessing["name"] != "paper":
        raise ModelInfoError(f"{where} goes with 'paper' preprocessing only")
    if not isinstance(records_resize, dict):
        raise ModelInfoError(f"{where} must be an object")
    shorter_side = records_resize.get("shorter_side")
    if isinstance(shorter_side, bool) or not isinstance(shorter_side, int) or shorter_side < 1:
        raise ModelInfoError(f"{where}.shorter_side must be a positive integer")
    if not isinstance(records_resize.get("center_crop"), bool):
        raise ModelInfoError(f"{where}.center_crop must be true or false")
    quality = records_resize.get("jpeg_quality", 95)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ModelInfoError(f"{where}.jpeg_quality must be an integer in 1..100")


def path_beside(model_path: str) -> str:
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    return os.path.join(folder, FILENAME)


def write_info(model_path: str, info: dict) -> str:
    """Writes the record beside `model_path` (a .keras file or its folder), atomically."""
    path = path_beside(model_path)
    check_info(info, source_name=path)
    descriptor, temporary = tempfile.mkstemp(prefix=".model_info-", dir=os.path.dirname(path))
    try:
        os.chmod(temporary, _READABLE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def read_info(model_path: str) -> dict | None:
    """The record beside `model_path`, or None when there is none (a model from before it)."""
    path = path_beside(model_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelInfoError(f"{path}: not a readable model record ({error})") from None
    return check_info(info, source_name=path)


__all__ = [
    "FILENAME",
    "ModelInfoError",
    "PREPROCESSING_NAMES",
    "RECORDS_RESIZE",
    "check_info",
    "for_network",
    "make_info",
    "paper_preprocessing",
    "path_beside",
    "read_info",
    "torchvision_preprocessing",
    "write_info",
]
