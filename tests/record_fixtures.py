"""Tiny TFRecord shards in the converter's format, for tests that need records but not a converter.

Each class is a solid colour of its own hue plus pixel noise, so a tiny AlexNet separates the
classes in a few dozen steps while the images still go through real JPEG decoding, odd sizes and
the input pipeline's crops.
"""

from __future__ import annotations

import colorsys
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from alexnet_tf import imagenet
from alexnet_tf.data import records


def class_colour(class_index: int, num_classes: int) -> tuple[int, int, int]:
    """A saturated RGB colour whose hue is spread evenly over the classes."""
    red, green, blue = colorsys.hsv_to_rgb(class_index / num_classes, 0.9, 0.9)
    return int(red * 255), int(green * 255), int(blue * 255)


def synthetic_jpeg(
    rng: np.random.Generator, colour: tuple[int, int, int], height: int, width: int
) -> bytes:
    """One noisy solid-colour RGB JPEG of the given size."""
    noise = rng.normal(0.0, 20.0, size=(height, width, 3))
    pixels = np.clip(np.asarray(colour, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_records(
    output_dir: str,
    *,
    split: str = "train",
    num_classes: int = 4,
    images_per_class: int = 8,
    num_shards: int = 2,
    min_side: int = 80,
    max_side: int = 140,
    label_offset: int = 0,
    seed: int = 0,
) -> list[str]:
    """Writes `num_shards` shards named like the converter's and returns their paths.

    Images are dealt round-robin over the shards in a seeded random order, so every shard holds
    a mix of classes. Labels are `class index + label_offset`; synsets are the first
    `num_classes` ImageNet synsets. The same arguments always give the same bytes.
    """
    if not 1 <= num_classes <= imagenet.NUM_CLASSES:
        raise ValueError(f"num_classes must be in [1, {imagenet.NUM_CLASSES}], got {num_classes}")
    if num_shards < 1 or min_side < 1 or max_side < min_side:
        raise ValueError("need num_shards >= 1 and 1 <= min_side <= max_side")
    rng = np.random.default_rng(seed)
    synsets = imagenet.synsets()
    names = imagenet.class_names()
    items = [(c, n) for c in range(num_classes) for n in range(images_per_class)]
    order = rng.permutation(len(items))
    os.makedirs(output_dir, exist_ok=True)
    paths = [
        os.path.join(output_dir, records.shard_name(split, i, num_shards))
        for i in range(num_shards)
    ]
    writers = [tf.io.TFRecordWriter(path) for path in paths]
    try:
        for position, item_index in enumerate(order):
            class_index, number = items[item_index]
            height, width = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
            jpeg = synthetic_jpeg(rng, class_colour(class_index, num_classes), height, width)
            synset = synsets[class_index]
            example = records.build_example(
                jpeg_bytes=jpeg,
                label=class_index + label_offset,
                synset=synset,
                text=names[class_index],
                height=height,
                width=width,
                filename=f"{synset}_{number}.JPEG",
            )
            writers[position % num_shards].write(example)
    finally:
        for writer in writers:
            writer.close()
    return paths


def write_image_records(
    path: str, images: list[np.ndarray], labels: list[int], *, quality: int = 95
) -> str:
    """One shard at `path` holding the given uint8 [H, W, 3] arrays as JPEGs; returns `path`.

    For tests that need to know the pixels (gradients, solid colours) rather than a corpus.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    synsets = imagenet.synsets()
    with tf.io.TFRecordWriter(path) as writer:
        for number, (pixels, label) in enumerate(zip(images, labels)):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
            writer.write(
                records.build_example(
                    jpeg_bytes=buffer.getvalue(),
                    label=label,
                    synset=synsets[label % imagenet.NUM_CLASSES],
                    text=f"image {number}",
                    height=pixels.shape[0],
                    width=pixels.shape[1],
                    filename=f"image_{number}.JPEG",
                )
            )
    return path
