"""A small ImageNet-shaped corpus drawn on the spot, to run the whole flow without ImageNet.

    python -m alexnet_tf.demo.corpus --output_dir=RAW [--images_per_class=300]
        [--validation_per_class=50] [--seed=0]

writes the EXTRACTED ImageNet layout that the converter reads, for the ten Imagenette classes
(real WordNet ids, so labels, class names and serving output are ImageNet's):

    RAW/train/<wnid>/<wnid>_<n>.JPEG          images_per_class per class
    RAW/val/ILSVRC2012_val_<8 digits>.JPEG    validation_per_class per class, flat

The validation folder is flat and unlabelled, as in ImageNet: file ILSVRC2012_val_i gets an
image of class `imagenet.validation_synsets()[i - 1]`, using only the indices whose ground
truth is one of the ten classes (ImageNet has 50 per class). The converter therefore labels
it from tensorflow-datasets' validation_labels.txt exactly as it labels the real thing.

Each class is a simple icon of its object (a fish for tench, a house with a cross for church,
...) in a colour near the class's own hue, placed at a random position, size and angle on a
background of random gradients and clutter. Shape and hue carry the class, so AlexNet learns
it in minutes on a laptop CPU; the clutter, overlapping hues and partial views keep it from
being solved in a handful of steps.
"""

from __future__ import annotations

import colorsys
import io
import math
import os

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from alexnet_tf import imagenet

# Imagenette's ten classes (github.com/fastai/imagenette), in ImageNet label order.
DEMO_SYNSETS = (
    "n01440764",  # tench
    "n02102040",  # English springer
    "n02979186",  # cassette player
    "n03000684",  # chain saw
    "n03028079",  # church
    "n03394916",  # French horn
    "n03417042",  # garbage truck
    "n03425413",  # gas pump
    "n03445777",  # golf ball
    "n03888257",  # parachute
)
MIN_SIDE, MAX_SIDE = 180, 320
JPEG_QUALITY = 90
# The object's hue stays within this distance of its class's hue (hues are 0.1 apart), so
# neighbouring classes overlap in colour and only the shape tells them apart.
HUE_JITTER = 0.07

# One icon per class, in DEMO_SYNSETS order. Each draws in a unit square (x right, y down)
# scaled to `s` pixels, with the colours "main", "dark" and "light" of one object.


def _fish(draw, s, colours):
    draw.ellipse(_box(0.08, 0.3, 0.72, 0.7, s), fill=colours["main"])
    draw.polygon(_points([(0.66, 0.5), (0.96, 0.25), (0.96, 0.75)], s), fill=colours["main"])
    draw.polygon(_points([(0.3, 0.32), (0.45, 0.18), (0.52, 0.33)], s), fill=colours["dark"])
    draw.ellipse(_box(0.18, 0.42, 0.25, 0.49, s), fill=colours["light"])


def _dog_face(draw, s, colours):
    draw.ellipse(_box(0.05, 0.2, 0.32, 0.85, s), fill=colours["dark"])
    draw.ellipse(_box(0.68, 0.2, 0.95, 0.85, s), fill=colours["dark"])
    draw.ellipse(_box(0.2, 0.1, 0.8, 0.8, s), fill=colours["main"])
    draw.ellipse(_box(0.33, 0.35, 0.42, 0.44, s), fill=colours["light"])
    draw.ellipse(_box(0.58, 0.35, 0.67, 0.44, s), fill=colours["light"])
    draw.ellipse(_box(0.43, 0.58, 0.57, 0.7, s), fill=colours["dark"])


def _cassette_player(draw, s, colours):
    draw.rectangle(_box(0.05, 0.2, 0.95, 0.8, s), fill=colours["main"])
    draw.rectangle(_box(0.2, 0.32, 0.8, 0.6, s), fill=colours["light"])
    for centre_x in (0.35, 0.65):
        draw.ellipse(_box(centre_x - 0.08, 0.38, centre_x + 0.08, 0.54, s), fill=colours["dark"])
    draw.rectangle(_box(0.15, 0.66, 0.85, 0.74, s), fill=colours["dark"])


def _chain_saw(draw, s, colours):
    teeth = [(0.35 + 0.06 * i + (0.03 if i % 2 else 0), 0.36 if i % 2 else 0.42)
             for i in range(11)]
    draw.polygon(_points([(0.35, 0.42)] + teeth + [(0.98, 0.5), (0.35, 0.58)], s),
                 fill=colours["light"])
    draw.rectangle(_box(0.35, 0.44, 0.95, 0.56, s), fill=colours["dark"])
    draw.rectangle(_box(0.02, 0.3, 0.4, 0.72, s), fill=colours["main"])
    draw.arc(_box(0.05, 0.12, 0.35, 0.45, s), 180, 360, fill=colours["dark"], width=max(2, s // 20))


def _church(draw, s, colours):
    draw.rectangle(_box(0.2, 0.5, 0.8, 0.95, s), fill=colours["main"])
    draw.polygon(_points([(0.12, 0.52), (0.5, 0.22), (0.88, 0.52)], s), fill=colours["dark"])
    draw.rectangle(_box(0.47, 0.02, 0.53, 0.24, s), fill=colours["dark"])
    draw.rectangle(_box(0.4, 0.08, 0.6, 0.13, s), fill=colours["dark"])
    draw.rectangle(_box(0.43, 0.7, 0.57, 0.95, s), fill=colours["light"])


def _french_horn(draw, s, colours):
    width = max(3, s // 9)
    draw.ellipse(_box(0.1, 0.15, 0.7, 0.75, s), outline=colours["main"], width=width)
    draw.ellipse(_box(0.25, 0.3, 0.55, 0.6, s), outline=colours["dark"], width=max(2, width // 2))
    draw.polygon(_points([(0.6, 0.58), (0.97, 0.35), (0.97, 0.95), (0.66, 0.72)], s),
                 fill=colours["main"])


def _garbage_truck(draw, s, colours):
    draw.rectangle(_box(0.02, 0.25, 0.68, 0.72, s), fill=colours["main"])
    draw.rectangle(_box(0.68, 0.42, 0.96, 0.72, s), fill=colours["dark"])
    draw.rectangle(_box(0.74, 0.47, 0.9, 0.58, s), fill=colours["light"])
    for centre_x in (0.2, 0.5, 0.82):
        draw.ellipse(_box(centre_x - 0.09, 0.64, centre_x + 0.09, 0.82, s), fill=(20, 20, 20))


def _gas_pump(draw, s, colours):
    draw.rectangle(_box(0.25, 0.05, 0.65, 0.95, s), fill=colours["main"])
    draw.rectangle(_box(0.32, 0.14, 0.58, 0.36, s), fill=colours["light"])
    draw.rectangle(_box(0.2, 0.88, 0.7, 0.98, s), fill=colours["dark"])
    draw.line(_points([(0.65, 0.45), (0.85, 0.5), (0.88, 0.8)], s), fill=colours["dark"],
              width=max(2, s // 20))
    draw.rectangle(_box(0.82, 0.78, 0.94, 0.9, s), fill=colours["dark"])


def _golf_ball(draw, s, colours):
    draw.ellipse(_box(0.1, 0.1, 0.9, 0.9, s), fill=colours["light"])
    for row in range(6):
        for column in range(6):
            x = 0.2 + 0.12 * column + (0.06 if row % 2 else 0)
            y = 0.2 + 0.12 * row
            if (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.3**2:
                draw.ellipse(_box(x - 0.025, y - 0.025, x + 0.025, y + 0.025, s),
                             fill=colours["main"])


def _parachute(draw, s, colours):
    draw.pieslice(_box(0.05, 0.05, 0.95, 0.75, s), 180, 360, fill=colours["main"])
    for angle in (200, 240, 280, 320):
        x = 0.5 + 0.45 * math.cos(math.radians(angle))
        draw.line(_points([(0.5, 0.4), (x, 0.4 + 0.35 * math.sin(math.radians(angle)))], s),
                  fill=colours["light"], width=max(1, s // 40))
    for x in (0.07, 0.35, 0.65, 0.93):
        draw.line(_points([(x, 0.4), (0.5, 0.85)], s), fill=colours["dark"],
                  width=max(1, s // 50))
    draw.rectangle(_box(0.44, 0.83, 0.56, 0.95, s), fill=colours["dark"])


ICONS = (
    _fish, _dog_face, _cassette_player, _chain_saw, _church,
    _french_horn, _garbage_truck, _gas_pump, _golf_ball, _parachute,
)


def _box(x0, y0, x1, y1, size):
    return [x0 * size, y0 * size, x1 * size, y1 * size]


def _points(points, size):
    return [(x * size, y * size) for x, y in points]


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(red * 255), int(green * 255), int(blue * 255)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth blend of four random corner colours, then lines, boxes and blobs of clutter."""
    corners = rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
    # Upsampling a 2x2 image is the cheapest way to a gradient: no per-pixel Python or NumPy.
    image = Image.fromarray(corners).resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 20))):
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, size=2) * width)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, size=2) * height)
        kind = rng.integers(3)
        if kind == 0:
            draw.line([(x0, y0), (x1, y1)], fill=_random_colour(rng),
                      width=int(rng.integers(1, 8)))
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3],
                           fill=_random_colour(rng))
        else:
            draw.ellipse([x0, y0, x0 + (x1 - x0) / 4, y0 + (y1 - y0) / 4],
                         fill=_random_colour(rng))
    return image


def _class_colours(rng: np.random.Generator, class_index: int) -> dict[str, tuple[int, int, int]]:
    hue = class_index / len(DEMO_SYNSETS) + rng.uniform(-HUE_JITTER, HUE_JITTER)
    saturation = rng.uniform(0.55, 1.0)
    value = rng.uniform(0.55, 1.0)
    return {
        "main": _rgb(hue, saturation, value),
        "dark": _rgb(hue, saturation, value * 0.45),
        "light": _rgb(hue, saturation * 0.25, min(1.0, value * 1.3)),
    }


def draw_image(class_index: int, rng: np.random.Generator) -> bytes:
    """One JPEG of class `class_index` (position in DEMO_SYNSETS), drawn from `rng`."""
    width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    image = _background(rng, width, height)
    size = int(min(width, height) * rng.uniform(0.45, 0.85))
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ICONS[class_index](ImageDraw.Draw(icon), size, _class_colours(rng, class_index))
    if rng.random() < 0.5:
        icon = icon.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    icon = icon.rotate(rng.uniform(-30, 30), resample=Image.Resampling.BILINEAR, expand=True)
    # The icon's centre stays inside the image; up to a third of it may be cut off.
    left = int(rng.uniform(-icon.width / 6, width - icon.width * 5 / 6))
    top = int(rng.uniform(-icon.height / 6, height - icon.height * 5 / 6))
    image.paste(icon, (left, top), icon)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def validation_indices(validation_per_class: int) -> dict[str, list[int]]:
    """For each demo synset, the first `validation_per_class` ImageNet validation indices
    (1-based, as in ILSVRC2012_val_00000001) whose ground truth is that synset."""
    indices: dict[str, list[int]] = {synset: [] for synset in DEMO_SYNSETS}
    for index, synset in enumerate(imagenet.validation_synsets(), start=1):
        chosen = indices.get(synset)
        if chosen is not None and len(chosen) < validation_per_class:
            chosen.append(index)
    return indices


def image_rng(seed: int, split: str, class_index: int, number: int) -> np.random.Generator:
    """The RNG of one image alone, so an image does not depend on how many others are drawn.

    `number` is n in <wnid>_<n>.JPEG for "train" and the validation index for "val".
    """
    return np.random.default_rng([seed, ("train", "val").index(split), class_index, number])


def _write(path: str, contents: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(contents)


def generate_demo_corpus(
    output_dir: str, images_per_class: int = 300, validation_per_class: int = 50, seed: int = 0
) -> dict:
    """Writes the corpus (see the module docstring) and says what it wrote.

    Returns {"train_dir", "val_dir", "synsets", "train_images": {synset: count},
    "validation_images": {synset: [file names]}}. The same arguments give the same bytes, and
    a smaller count gives a prefix of a larger one's images.
    """
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be at least 1, got {images_per_class}")
    per_class_in_imagenet = imagenet.NUM_VALIDATION_IMAGES // imagenet.NUM_CLASSES
    if not 0 <= validation_per_class <= per_class_in_imagenet:
        raise ValueError(
            f"validation_per_class must be in [0, {per_class_in_imagenet}] (ImageNet has "
            f"{per_class_in_imagenet} validation images per class), got {validation_per_class}"
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    train_dir = os.path.join(output_dir, "train")
    val_dir = os.path.join(output_dir, "val")
    os.makedirs(val_dir, exist_ok=True)
    for class_index, synset in enumerate(DEMO_SYNSETS):
        class_dir = os.path.join(train_dir, synset)
        os.makedirs(class_dir, exist_ok=True)
        for number in range(images_per_class):
            jpeg = draw_image(class_index, image_rng(seed, "train", class_index, number))
            _write(os.path.join(class_dir, f"{synset}_{number}.JPEG"), jpeg)
    validation_images: dict[str, list[str]] = {}
    for synset, indices in validation_indices(validation_per_class).items():
        class_index = DEMO_SYNSETS.index(synset)
        validation_images[synset] = []
        for index in indices:
            name = f"ILSVRC2012_val_{index:08d}.JPEG"
            _write(os.path.join(val_dir, name),
                   draw_image(class_index, image_rng(seed, "val", class_index, index)))
            validation_images[synset].append(name)
    return {
        "train_dir": train_dir,
        "val_dir": val_dir,
        "synsets": DEMO_SYNSETS,
        "train_images": {synset: images_per_class for synset in DEMO_SYNSETS},
        "validation_images": validation_images,
    }


FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Folder to write train/ and val/ into (created).")
flags.DEFINE_integer("images_per_class", 300, "Training images per class.")
flags.DEFINE_integer(
    "validation_per_class", 50, "Validation images per class (at most 50, as in ImageNet)."
)
flags.DEFINE_integer("seed", 0, "Seed of the drawings; the same seed writes the same files.")
flags.mark_flag_as_required("output_dir")
flags.register_validator(
    "images_per_class", lambda v: v >= 1, "--images_per_class must be at least 1"
)
flags.register_validator(
    "validation_per_class", lambda v: 0 <= v <= 50, "--validation_per_class must be in [0, 50]"
)
flags.register_validator("seed", lambda v: v >= 0, "--seed must be non-negative")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    summary = generate_demo_corpus(
        FLAGS.output_dir, FLAGS.images_per_class, FLAGS.validation_per_class, FLAGS.seed
    )
    num_validation = sum(len(names) for names in summary["validation_images"].values())
    print(f"wrote {FLAGS.images_per_class} images x {len(DEMO_SYNSETS)} classes to "
          f"{summary['train_dir']}/<wnid>/")
    print(f"wrote {num_validation} images to {summary['val_dir']}/ "
          f"(ILSVRC2012_val_*.JPEG, labelled by ImageNet's validation ground truth)")
    for synset in DEMO_SYNSETS:
        print(f"  {synset}  {imagenet.class_name_for(synset)}")


def run_main() -> None:
    app.run(main)


if __name__ == "__main__":
    run_main()
