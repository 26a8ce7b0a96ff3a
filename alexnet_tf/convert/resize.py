"""The paper's 256x256 records: `--resize_shorter_side=256 [--center_crop] [--jpeg_quality=95]`.

Section 2 of the paper "down-sampled the images to a fixed resolution of 256 x 256": shorter
side to 256, then the central 256x256 patch. Doing that once, at conversion, halves the records
(measured on 500x375 JPEGs, benchmarks/convert.py) and leaves each training step a third of the
pixels to decode, which is what keeps a GPU fed (issue 15).

* Images whose shorter side is above `shorter_side` are scaled down to it with Pillow's
  antialiased Lanczos filter (after libjpeg's own DCT-domain downscale by a power of two,
  never below twice the target, as `Image.thumbnail` does); the longer side is rounded as
  `augment.scaled_size` rounds it. Smaller images are never scaled up.
* `center_crop` then keeps the central square of side min(height, width) (the shorter side is
  rounded down at the top/left margin, as `augment.center_crop` does).
* An image that neither changes keeps its bytes (or its repair) exactly as without the option.
  The others are encoded once, at `jpeg_quality` with 4:2:0 chroma (as ImageNet's JPEGs are).

The geometry is a pure function of the original size and the options, so the stored size and
the boxes are known without decoding, and a shard's bytes depend only on its plan.
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

from alexnet_tf.convert import images

DEFAULT_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class ResizeOptions:
    """How records store images; the default stores the originals."""

    shorter_side: int | None = None
    center_crop: bool = False
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if self.shorter_side is not None and self.shorter_side < 1:
            raise ValueError(f"--resize_shorter_side={self.shorter_side}: must be at least 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg_quality={self.jpeg_quality}: must be in 1..100")
        if self.center_crop and self.shorter_side is None:
            raise ValueError("--center_crop needs --resize_shorter_side (e.g. 256, the paper's)")

    @property
    def active(self) -> bool:
        return self.shorter_side is not None

    def manifest_entry(self) -> dict:
        """What manifest.json's options record, and what the shard digest holds when active."""
        return {
            "resize_shorter_side": self.shorter_side,
            "center_crop": self.center_crop,
            "jpeg_quality": self.jpeg_quality if self.active else None,
        }


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The original image scaled to scaled_width x scaled_height, then the window
    [left, left + width) x [top, top + height) of that kept."""

    original_height: int
    original_width: int
    scaled_height: int
    scaled_width: int
    top: int
    left: int
    height: int
    width: int

    @property
    def unchanged(self) -> bool:
        return (self.height, self.width) == (self.original_height, self.original_width)

    def relative_box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box in original pixels (xmin, ymin, xmax, ymax) -> relative to the stored image, clamped."""
        x_scale = self.scaled_width / self.original_width
        y_scale = self.scaled_height / self.original_height
        xmin, ymin, xmax, ymax = box

        def clamp(value: float) -> float:
            return min(max(value, 0.0), 1.0)

        return (
            clamp((xmin * x_scale - self.left) / self.width),
            clamp((ymin * y_scale - self.top) / self.height),
            clamp((xmax * x_scale - self.left) / self.width),
            clamp((ymax * y_scale - self.top) / self.height),
        )


def geometry(height: int, width: int, options: ResizeOptions) -> Geometry:
    """Where an original of height x width ends up in a record written with `options`."""
    scaled_height, scaled_width = height, width
    shorter = min(height, width)
    if options.shorter_side is not None and shorter > options.shorter_side:
        scale = options.shorter_side / shorter
        # As augment.scaled_size: the shorter side exact, the longer rounded (halves to even).
        scaled_height = options.shorter_side if height <= width else round(height * scale)
        scaled_width = options.shorter_side if width < height else round(width * scale)
    top, left, kept_height, kept_width = 0, 0, scaled_height, scaled_width
    if options.center_crop:
        side = min(scaled_height, scaled_width)
        top, left = (scaled_height - side) // 2, (scaled_width - side) // 2
        kept_height = kept_width = side
    return Geometry(height, width, scaled_height, scaled_width, top, left, kept_height, kept_width)


def resized_jpeg(data: bytes, where: Geometry, jpeg_quality: int) -> bytes:
    """The JPEG of the original `data` scaled and cropped as `where` says (any format in)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            # libjpeg scales by 1/2, 1/4 or 1/8 while decoding, never below the size asked.
            image.draft(image.mode, (2 * where.scaled_width, 2 * where.scaled_height))
        pixels = images._to_rgb(image)
        if (where.scaled_height, where.scaled_width) == (where.original_height, where.original_width):
            pixels = pixels.crop((where.left, where.top, where.left + where.width, where.top + where.height))
        else:
            # Only the kept window is resampled (from the pixels around it too): the same
            # image as scaling all and cropping after, 20% cheaper for a centre crop of 500x375.
            # Stored pixels per decoded pixel (libjpeg's draft may have decoded at 1/2..1/8).
            x_scale = where.scaled_width / pixels.width
            y_scale = where.scaled_height / pixels.height
            window = (where.left / x_scale, where.top / y_scale,
                      (where.left + where.width) / x_scale, (where.top + where.height) / y_scale)
            pixels = pixels.resize((where.width, where.height), Image.Resampling.LANCZOS, box=window)
    buffer = io.BytesIO()
    pixels.save(buffer, format="JPEG", quality=jpeg_quality, subsampling=2)
    return buffer.getvalue()
