"""torchvision's ImageNet eval transform up to ToTensor, written out with PIL (no torchvision).

Resize(256) and CenterCrop(224) as torchvision/transforms/functional.py computes them for a
PIL image: the longer side int(256 * long / short), PIL's bilinear resize (which antialiases
when shrinking), crop offsets int(round((size - 224) / 2.0)).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _resized(image_bytes: bytes, resize: int) -> Image.Image:
    """Resize(resize) on the decoded RGB image: the longer side int(resize * long / short)."""
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = resize, int(resize * long / short)
    new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize((new_width, new_height), Image.BILINEAR)


def _centre_box(image: Image.Image, crop: int) -> tuple[int, int]:
    """CenterCrop's (left, top): int(round((size - crop) / 2.0))."""
    width, height = image.size
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def torchvision_eval_pixels(image_bytes: bytes, resize: int = 256, crop: int = 224) -> np.ndarray:
    """uint8 [crop, crop, 3]: what torchvision's eval transform feeds ToTensor."""
    image = _resized(image_bytes, resize)
    left, top = _centre_box(image, crop)
    return np.asarray(image.crop((left, top, left + crop, top + crop)))


def torchvision_ten_crop_pixels(image_bytes: bytes, resize: int = 256, crop: int = 224) -> np.ndarray:
    """uint8 [10, crop, crop, 3]: Resize then TenCrop, as torchvision's five_crop and ten_crop
    compute them: the four corners of the resized image and its centre crop, then the same
    five of its mirror image."""
    image = _resized(image_bytes, resize)
    width, height = image.size

    def five_crop(picture: Image.Image) -> list[np.ndarray]:
        boxes = [(0, 0), (width - crop, 0), (0, height - crop), (width - crop, height - crop),
                 _centre_box(picture, crop)]
        return [np.asarray(picture.crop((x, y, x + crop, y + crop))) for x, y in boxes]

    return np.stack(five_crop(image) + five_crop(image.transpose(Image.FLIP_LEFT_RIGHT)))
