"""Decides, from an image's bytes alone, whether to store it as is, repair it, or reject it.

ImageNet's known quirks (a PNG saved as .JPEG, 22 CMYK JPEGs, grayscale photos) and the broken
files of any large download are found by looking at the bytes, never from a list of file names,
so the same rules catch them in any copy of the data. Plain RGB JPEGs are stored byte for byte:
re-encoding would cost time and quality for nothing. Everything else that decodes becomes an
RGB JPEG, because the input pipeline decodes records with `tf.io.decode_jpeg` and TF's decoder
mishandles CMYK/YCCK and cannot read WebP at all.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, ImageFile

# Pillow's own bomb guard is replaced by our --max_pixels check, which reads the size from the
# header and refuses before any pixel is allocated.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default bomb threshold: about 256 MiB of RGB pixels
REPAIR_JPEG_QUALITY = 95

_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class BrokenImage(Exception):
    """An image that cannot become a record; the message is the reason users will read."""


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    jpeg_bytes: bytes
    height: int
    width: int
    repair: str | None  # what was done, e.g. "PNG RGBA -> RGB JPEG"; None when stored as is


def sniff_format(data: bytes) -> str | None:
    """The container format from the magic bytes; None for anything that is not an image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels for any mode; why each case is handled the way it is:

    - 16-bit grayscale ("I;16", "I"): Pillow's own conversion clips at 255, which would turn most
      of the image white, so we keep the high byte instead.
    - Transparency: composited over white, as a browser or viewer shows the image; the colour
      stored under fully transparent pixels is arbitrary and often garbage.
    - CMYK/YCCK: Pillow applies the Adobe inversion convention that TF's decoder ignores.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.uint32)
        peak = 65535 if image.mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255
        scaled = (pixels * 255 + peak // 2) // peak
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # 4:4:4 chroma at quality 95: a repaired image should lose as little as a JPEG can.
    image.save(buffer, format="JPEG", quality=REPAIR_JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def prepare_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    """Checks that the image decodes completely; repairs it into an RGB JPEG when needed.

    Raises BrokenImage for empty, truncated or undecodable files, non-images and images over
    `max_pixels`.
    """
    if not data:
        raise BrokenImage("empty file")
    container = sniff_format(data)
    if container is None:
        raise BrokenImage(f"not an image (starts with {data[:8]!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "palette images with transparency"
            with Image.open(io.BytesIO(data), formats=[container]) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise BrokenImage(f"{container} with an empty size {width}x{height}")
                if width * height > max_pixels:
                    raise BrokenImage(
                        f"decompression bomb: {width}x{height} = {width * height:,} pixels is over "
                        f"--max_pixels={max_pixels:,}"
                    )
                mode = image.mode
                if container == "JPEG" and mode == "RGB":
                    # Stored as it is, so the pixels are never needed: libjpeg decodes at 1/8 scale
                    # (DC coefficients only, no full IDCT or colour conversion), which still reads
                    # and Huffman-decodes every coefficient of every scan to the last one. A
                    # truncated or undecodable file fails exactly as in a full decode.
                    image.draft("RGB", (1, 1))
                    image.load()
                    return PreparedImage(data, height, width, None)
                # Decoding everything is the only way to know the file is complete and readable.
                image.load()
                repaired = _encode_jpeg(_to_rgb(image))
                bits = " 16-bit" if mode.startswith("I") else ""
                return PreparedImage(repaired, height, width, f"{container} {mode}{bits} -> RGB JPEG")
    except BrokenImage:
        raise
    except Image.DecompressionBombError as error:  # not raised with MAX_IMAGE_PIXELS=None; kept as a guard
        raise BrokenImage(f"decompression bomb: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as error:
        detail = str(error) or type(error).__name__
        if "truncated" in detail.lower():
            raise BrokenImage(f"truncated {container}: {detail}") from error
        raise BrokenImage(f"undecodable {container}: {detail}") from error
