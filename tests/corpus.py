"""Small raw ImageNet corpora in each layout, with every quirk and broken kind, made on the spot.

Each image is recorded with the outcome a user should see (stored as is, repaired, or skipped
with a reason), so the tests can check that every input ends up in a record or in the report.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tarfile
import zlib

import numpy as np
from PIL import Image

from alexnet_tf import imagenet

CLASSES = ("n01440764", "n01443537", "n01484850")
STORED, REPAIRED, SKIPPED = "stored", "repaired", "skipped"


@dataclasses.dataclass
class RawImage:
    synset: str
    filename: str
    data: bytes
    outcome: str
    reason: str = ""  # a word the skip reason or repair description must contain


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random picture, so JPEG sizes and decode costs look like real photos."""
    coarse = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.BILINEAR)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose header claims a huge image: decoding it would allocate gigabytes."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def good_jpeg(rng: np.random.Generator, width: int = 72, height: int = 56) -> bytes:
    return _encode(_photo(rng, width, height), "JPEG", quality=90)


def quirky_images(rng: np.random.Generator) -> list[tuple[str, bytes, str, str]]:
    """(stem, bytes, outcome, reason word) for each quirk and broken kind of the issue."""
    photo = _photo(rng, 64, 48)
    gray16 = Image.fromarray(np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16))
    truncated = good_jpeg(rng)
    return [
        ("cmyk", _encode(Image.new("CMYK", (64, 48), (20, 180, 40, 10)), "JPEG"), REPAIRED, "CMYK"),
        ("png_named_jpeg", _encode(photo, "PNG"), REPAIRED, "PNG"),
        ("gif_named_jpeg", _encode(photo.convert("P"), "GIF"), REPAIRED, "GIF"),
        ("bmp_named_jpeg", _encode(photo, "BMP"), REPAIRED, "BMP"),
        ("webp_named_jpeg", _encode(photo, "WEBP"), REPAIRED, "WEBP"),
        ("grayscale", _encode(photo.convert("L"), "JPEG"), REPAIRED, "JPEG L"),
        ("rgba", _encode(photo.convert("RGBA"), "PNG"), REPAIRED, "RGBA"),
        ("palette", _encode(photo.convert("P"), "PNG"), REPAIRED, "PNG P"),
        ("sixteen_bit", _encode(gray16, "PNG"), REPAIRED, "16-bit"),
        ("empty", b"", SKIPPED, "empty"),
        ("truncated", truncated[: len(truncated) // 2], SKIPPED, "truncated"),
        ("not_an_image", b"<html>404 Not Found</html>\n", SKIPPED, "not an image"),
        ("bomb", png_bomb(), SKIPPED, "decompression bomb"),
    ]


def make_images(seed: int = 0, per_class: int = 4, quirks: bool = True) -> list[RawImage]:
    """Training images: `per_class` plain JPEGs per class, and the quirks spread over classes."""
    rng = np.random.default_rng(seed)
    images = []
    for synset in CLASSES:
        for index in range(per_class):
            width, height = int(rng.integers(48, 120)), int(rng.integers(48, 120))
            images.append(RawImage(synset, f"{synset}_{index}.JPEG", good_jpeg(rng, width, height), STORED))
    if quirks:
        for position, (stem, data, outcome, reason) in enumerate(quirky_images(rng)):
            synset = CLASSES[position % len(CLASSES)]
            images.append(RawImage(synset, f"{synset}_{stem}.JPEG", data, outcome, reason))
    return images


def validation_images(seed: int = 1, per_class: int = 2) -> list[RawImage]:
    """Validation JPEGs named ILSVRC2012_val_%08d.JPEG whose ground truth is one of CLASSES."""
    rng = np.random.default_rng(seed)
    images = []
    for synset in CLASSES:
        indices = [i + 1 for i, truth in enumerate(imagenet.validation_synsets()) if truth == synset][:per_class]
        for index in indices:
            images.append(RawImage(synset, f"ILSVRC2012_val_{index:08d}.JPEG", good_jpeg(rng), STORED))
    return images


CLUTTER = {".DS_Store": b"\0\0\0\1Bud1", "Thumbs.db": b"\xd0\xcf\x11\xe0", "readme.txt": b"class notes\n"}


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def write_extracted(root: str, train: list[RawImage], validation: list[RawImage], *, sorted_validation: bool = False) -> None:
    for image in train:
        _write(os.path.join(root, "train", image.synset, image.filename), image.data)
    for image in validation:
        folder = os.path.join(root, "val", image.synset) if sorted_validation else os.path.join(root, "val")
        _write(os.path.join(folder, image.filename), image.data)
    for name, data in CLUTTER.items():
        _write(os.path.join(root, "train", CLASSES[0], name), data)
    _write(os.path.join(root, "val", ".DS_Store"), CLUTTER[".DS_Store"])


def _box_string(synset: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    xmin, ymin = rng.integers(-5, 20, 2)  # some boxes poke outside the image: they get clamped
    return f"{synset} {xmin} {ymin} {xmin + 30} {ymin + 500}"


def write_kaggle(root: str, train: list[RawImage], validation: list[RawImage]) -> None:
    base = os.path.join(root, "ILSVRC", "Data", "CLS-LOC")
    for image in train:
        _write(os.path.join(base, "train", image.synset, image.filename), image.data)
    for image in validation:
        _write(os.path.join(base, "val", image.filename), image.data)
    with open(os.path.join(root, "LOC_synset_mapping.txt"), "w") as handle:
        for synset in CLASSES:
            handle.write(f"{synset} kaggle name of {synset}\n")
    with open(os.path.join(root, "LOC_val_solution.csv"), "w") as handle:
        handle.write("ImageId,PredictionString\n")
        for position, image in enumerate(validation):
            handle.write(f"{os.path.splitext(image.filename)[0]},{_box_string(image.synset, position)} \n")
    with open(os.path.join(root, "LOC_train_solution.csv"), "w") as handle:
        handle.write("ImageId,PredictionString\n")
        first = train[0]
        handle.write(f"{os.path.splitext(first.filename)[0]},{_box_string(first.synset, 99)} {_box_string(first.synset, 98)}\n")


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_tars(root: str, train: list[RawImage], validation: list[RawImage], *, hostile_members: bool = False) -> None:
    """The original ILSVRC2012 archives: a tar of per-class tars, and a flat validation tar."""
    os.makedirs(root, exist_ok=True)
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_train.tar"), "w", format=tarfile.GNU_FORMAT) as outer:
        for synset in CLASSES:
            inner_buffer = io.BytesIO()
            with tarfile.open(fileobj=inner_buffer, mode="w", format=tarfile.GNU_FORMAT) as inner:
                for image in train:
                    if image.synset == synset:
                        _add_bytes(inner, image.filename, image.data)
                if hostile_members and synset == CLASSES[0]:
                    _add_bytes(inner, "../../escaped.JPEG", train[0].data)
                    _add_bytes(inner, "/etc/absolute.JPEG", train[0].data)
                    link = tarfile.TarInfo("link.JPEG")
                    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                    inner.addfile(link)
            _add_bytes(outer, f"{synset}.tar", inner_buffer.getvalue())
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_val.tar"), "w", format=tarfile.GNU_FORMAT) as archive:
        for image in validation:
            _add_bytes(archive, image.filename, image.data)


# Your own class folders (--layout=folders): names as people write them, files as cameras,
# phones and downloads leave them (any extension or none, PNGs among JPEGs).
FOLDER_CLASSES = ("my cats", "Äpfel", "chiens été", "10", "Zebra")


def _folder_images(rng: np.random.Generator, class_index: int, per_class: int) -> list[tuple[str, bytes, str, str]]:
    """(file name, bytes, outcome, reason word) of one class folder."""
    photo = _photo(rng, 64, 48)
    extensions = (".jpg", ".JPG", ".jpeg", "", ".JPEG")
    files = [(f"photo {index}{extensions[index % len(extensions)]}", good_jpeg(rng), STORED, "")
             for index in range(per_class)]
    kinds = [
        ("screenshot.png", _encode(photo, "PNG"), REPAIRED, "PNG"),
        ("scan.bmp", _encode(photo, "BMP"), REPAIRED, "BMP"),
        ("anim.gif", _encode(photo.convert("P"), "GIF"), REPAIRED, "GIF"),
        ("web.webp", _encode(photo, "WEBP"), REPAIRED, "WEBP"),
        ("jpeg_named.png", good_jpeg(rng), STORED, ""),
        ("half.jpg", good_jpeg(rng)[:200], SKIPPED, "truncated"),
        ("bomb.png", png_bomb(), SKIPPED, "decompression bomb"),
    ]
    return files + [kinds[class_index % len(kinds)], kinds[(class_index + 3) % len(kinds)]]


def write_class_folders(root: str, classes=FOLDER_CLASSES, *, per_class: int = 5, seed: int = 0,
                        clutter: bool = True) -> dict[str, tuple[str, str, str]]:
    """Writes `root/<class>/<file>` and returns {relative path: (class, outcome, reason word)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for class_index, name in enumerate(classes):
        for filename, data, outcome, reason in _folder_images(rng, class_index, per_class):
            _write(os.path.join(root, name, filename), data)
            written[os.path.join(name, filename)] = (name, outcome, reason)
        if clutter and class_index == 0:
            for clutter_name, data in CLUTTER.items():
                _write(os.path.join(root, name, clutter_name), data)
    return written
