"""The input pipeline: TFRecord shards -> decoded, cropped, augmented, batched images.

    read (parallel interleave over shards) -> parse -> decode + crop -> augment -> batch -> prefetch

Training follows the paper (section 4.1): a random crop of the image scaled to 256 on its
shorter side, a random mirror, PCA colour noise, mean subtraction. Evaluation takes the centre
crop with `preprocess_for_eval`, the very function the exported SavedModel runs on request bytes,
so accuracy measured here is the accuracy served. The layout of the pipeline follows the
tf.data performance guide (https://www.tensorflow.org/guide/data_performance).
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf import augment, records


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] from JPEG, PNG, GIF (first frame) or BMP bytes.

    Serving receives whatever a client sends, so this accepts every format TensorFlow decodes;
    grayscale and RGBA become RGB.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def preprocess_for_eval(image_bytes: tf.Tensor, image_size: int = 227) -> tf.Tensor:
    """float32 [S, S, 3]: the centre crop of the image scaled to 256, mean subtracted.

    The exporter embeds this function in the serving signature (under `tf.map_fn`) and the
    evaluation pipeline calls it too, so both give bit-identical inputs for the same bytes.
    """
    image = augment.resize_shorter_side(decode_image(image_bytes))
    image = augment.center_crop(image, image_size)
    image.set_shape([image_size, image_size, 3])
    return augment.subtract_mean(image)


def preprocess_for_ten_crop(image_bytes: tf.Tensor, image_size: int = 227) -> tf.Tensor:
    """float32 [10, S, S, 3]: the paper's ten test patches (section 4.1), mean subtracted."""
    image = augment.resize_shorter_side(decode_image(image_bytes))
    crops = augment.ten_crop(image, image_size)
    crops.set_shape([10, image_size, image_size, 3])
    return augment.subtract_mean(crops)


def decode_and_random_crop(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227
) -> tf.Tensor:
    """float32 [S, S, 3]: a random S x S crop of the image scaled to 256 on its shorter side.

    Computes where that crop lies in the original image, decodes only that window
    (`tf.image.decode_and_crop_jpeg` skips the rest of the JPEG's blocks) and resizes it to
    S x S. The result is the crop of the resized image up to interpolation at the borders, for
    less work: on 500x375 quality-90 JPEGs it takes 1.43 CPU ms per image against 1.69 ms to
    decode the whole image, resize it to 256 and crop (benchmarks/input_pipeline.py). The
    saving is modest because the JPEG's entropy coding must still be read up to the window's
    last row; only the inverse DCT and colour conversion outside the window are skipped.
    """
    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    window = augment.random_crop_window(shape[0], shape[1], image_size, seed)
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    image = augment.resize_bilinear(image, [image_size, image_size])
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_for_train(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227, lighting: bool = True
) -> tf.Tensor:
    """float32 [S, S, 3]: random crop of the 256-scaled image, random mirror, lighting, mean.

    Records are always RGB JPEG (the converter re-encodes anything else), so this may use
    JPEG-only ops. `seed` ([2] int) drives every random choice for this image.
    """
    crop_seed, flip_seed, lighting_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3)
    )
    image = decode_and_random_crop(jpeg_bytes, crop_seed, image_size)
    image = augment.random_flip(image, flip_seed)
    shift = augment.lighting_shift(lighting_seed) if lighting else None
    return augment.subtract_mean(image, shift)


def _matching_files(file_pattern: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise ValueError(f"no files match the pattern {file_pattern!r}")
    return files


def _validate_arguments(
    *, training: bool, batch_size: int, image_size: int, ten_crop: bool, shuffle_buffer: int
) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 1 <= image_size <= augment.SHORTER_SIDE:
        raise ValueError(
            f"image_size must be in [1, {augment.SHORTER_SIDE}] (crops come from the image "
            f"scaled to {augment.SHORTER_SIDE}), got {image_size}"
        )
    if ten_crop and training:
        raise ValueError("ten_crop is the test-time protocol; it needs training=False")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")


def _labels(raw_label: tf.Tensor, label_offset: int) -> tf.Tensor:
    label = tf.cast(raw_label, tf.int32) - label_offset
    check = tf.debugging.assert_non_negative(
        label,
        message=(
            f"a record's label minus label_offset={label_offset} is negative; the records "
            "were written with a smaller --label_offset"
        ),
    )
    with tf.control_dependencies([check]):
        return tf.identity(label)


def build_dataset(
    file_pattern: str,
    *,
    training: bool,
    batch_size: int,
    image_size: int = 227,
    label_offset: int = 0,
    ten_crop: bool = False,
    shuffle_buffer: int = 10000,
    seed: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    drop_remainder: bool | None = None,
    cache: bool = False,
    repeat: bool = False,
    lighting: bool = True,
) -> tf.data.Dataset:
    """(images, labels) batches from the converter's TFRecord shards.

    images: float32 [B, S, S, 3] (or [B, 10, S, S, 3] with `ten_crop`), mean-subtracted pixels
    on the 0..255 scale; labels: int32 [B], 0-based (the record's label minus `label_offset`,
    so records written with the 1..1000 convention read back as 0..999).

    Distribution: with `input_context` (from `strategy.distribute_datasets_from_function`),
    `batch_size` is the GLOBAL batch, each pipeline yields per-replica batches
    (`input_context.get_per_replica_batch_size`), and pipeline i of n keeps
      - the files i, i+n, i+2n, ... of the sorted file list when there are at least n files
        (no pipeline reads what it throws away), otherwise
      - the records i, i+n, ... of the deterministic interleaving of all files.
    Either way the n pipelines together see every record exactly once per epoch. tf.data's
    own auto-sharding is switched off, since this has sharded already.

    Order: training shuffles the files and the records and lets parallel reads and maps finish
    out of order for speed; with a `seed` the order and every augmentation draw are fixed (at
    some cost in speed). Evaluation reads in file order and yields every record once.

    `cache` keeps the serialized records in memory after the first epoch (for small corpora);
    decoding and augmentation still run every epoch, so training crops stay random.
    `drop_remainder` defaults to `training`, so evaluation sees every record.
    """
    _validate_arguments(
        training=training,
        batch_size=batch_size,
        image_size=image_size,
        ten_crop=ten_crop,
        shuffle_buffer=shuffle_buffer,
    )
    files = _matching_files(file_pattern)
    if drop_remainder is None:
        drop_remainder = training
    deterministic = not training or seed is not None

    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    per_replica_batch = (
        input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
    )
    shard_by_file = num_pipelines > 1 and len(files) >= num_pipelines
    shard_by_record = num_pipelines > 1 and not shard_by_file

    # The sorted list, so every pipeline sees the same list before it takes its shard; it is
    # shuffled after sharding (a per-pipeline shuffle before it would overlap the shards).
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shard_by_file:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if training and not shard_by_record:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=tf.data.AUTOTUNE,
        # Sharding by record needs the same record order in every pipeline.
        deterministic=deterministic or shard_by_record,
    )
    if shard_by_record:
        dataset = dataset.shard(num_pipelines, pipeline_id)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    parse_spec = records.PARSE_SPEC
    if training:
        # One independent [2] seed per image; `rerandomize_each_iteration` gives each epoch
        # new crops even when `seed` is fixed, and each pipeline gets a stream of its own.
        stream_seed = None if seed is None else seed * num_pipelines + pipeline_id
        seeds = tf.data.Dataset.random(seed=stream_seed, rerandomize_each_iteration=True)
        seeds = seeds.batch(2)

        def parse_and_augment(serialized, image_seed):
            example = tf.io.parse_single_example(serialized, parse_spec)
            image = preprocess_for_train(
                example[records.ENCODED], image_seed, image_size, lighting
            )
            return image, _labels(example[records.LABEL], label_offset)

        dataset = tf.data.Dataset.zip(dataset, seeds)
        dataset = dataset.map(
            parse_and_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
    else:
        preprocess = preprocess_for_ten_crop if ten_crop else preprocess_for_eval

        def parse_and_preprocess(serialized):
            example = tf.io.parse_single_example(serialized, parse_spec)
            image = preprocess(example[records.ENCODED], image_size)
            return image, _labels(example[records.LABEL], label_offset)

        dataset = dataset.map(parse_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE)

    dataset = dataset.batch(per_replica_batch, drop_remainder=drop_remainder)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
    return dataset.with_options(options)

