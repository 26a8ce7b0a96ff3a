"""The input pipeline: TFRecord shards -> decoded, cropped, augmented, batched images.

    read (parallel interleave over shards) -> parse -> decode + crop -> augment -> batch -> prefetch

Training follows the paper (section 4.1): a random crop of the image scaled to 256 on its
shorter side, a random mirror, PCA colour noise, mean subtraction. Evaluation takes the centre
crop with `preprocess_for_eval`, the very function the exported SavedModel runs on request bytes,
so accuracy measured here is the accuracy served. The layout of the pipeline follows the
tf.data performance guide (https://www.tensorflow.org/guide/data_performance).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import tensorflow as tf

from alexnet_tf.data import augment, image_decode, records, validation


def decode_image(
    image_bytes: tf.Tensor, max_pixels: int | None = None, jpeg_dct_method: str = ""
) -> tf.Tensor:
    """uint8 [H, W, 3] from JPEG, PNG, GIF (first frame), BMP or WebP bytes.

    Serving receives whatever a client sends, so this accepts every format TensorFlow decodes,
    refuses images over `max_pixels` from their headers, and turns grayscale, alpha and 16-bit
    images into the RGB pixels the converter puts in the records (see `image_decode`, also for
    `jpeg_dct_method`).
    """
    return image_decode.decode_image(image_bytes, max_pixels, jpeg_dct_method)


def preprocess_for_eval(
    image_bytes: tf.Tensor, image_size: int = 227, max_pixels: int | None = None,
    shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """float32 [S, S, 3]: the centre crop of the image scaled to `shorter_side` (the paper's
    256), mean subtracted.

    The exporter embeds this function in the serving signature (under `tf.map_fn`) and the
    evaluation pipeline calls it too, so both give bit-identical inputs for the same bytes.
    """
    return eval_crop(decode_image(image_bytes, max_pixels), image_size, shorter_side)


def eval_crop(
    image: tf.Tensor, image_size: int = 227, shorter_side: int = augment.SHORTER_SIDE
) -> tf.Tensor:
    """float32 [S, S, 3]: `preprocess_for_eval` on a decoded uint8 [H, W, 3] image."""
    image = augment.resize_shorter_side(image, shorter_side)
    image = augment.center_crop(image, image_size)
    image.set_shape([image_size, image_size, 3])
    return augment.subtract_mean(image)


def preprocess_for_ten_crop(
    image_bytes: tf.Tensor, image_size: int = 227, crop_region: str = augment.PAPER_CROP_REGION,
    shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """float32 [10, S, S, 3]: the paper's ten test patches (section 4.1), mean subtracted."""
    return ten_crops(decode_image(image_bytes), image_size, crop_region, shorter_side)


def ten_crops(
    image: tf.Tensor, image_size: int = 227, crop_region: str = augment.PAPER_CROP_REGION,
    shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """float32 [10, S, S, 3]: `preprocess_for_ten_crop` on a decoded uint8 [H, W, 3] image."""
    image = augment.resize_shorter_side(image, shorter_side)
    crops = augment.ten_crop(image, image_size, crop_region)
    crops.set_shape([10, image_size, image_size, 3])
    return augment.subtract_mean(crops)


def decode_and_random_crop(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227,
    crop_region: str = augment.PAPER_CROP_REGION, shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """float32 [S, S, 3]: a random S x S crop of the image scaled to `shorter_side` (the
    paper's 256) on its shorter side.

    Computes where that crop lies in the original image, decodes only that window
    (`tf.image.decode_and_crop_jpeg` skips the rest of the JPEG's blocks) and resizes it to
    S x S. The result is the crop of the resized image up to interpolation at the borders, for
    less work: on 500x375 quality-90 JPEGs it takes 1.43 CPU ms per image against 1.69 ms to
    decode the whole image, resize it to 256 and crop (benchmarks/input_pipeline.py). The
    saving is modest because the JPEG's entropy coding must still be read up to the window's
    last row; only the inverse DCT and colour conversion outside the window are skipped.
    """
    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    window = augment.random_crop_window(
        shape[0], shape[1], image_size, seed, crop_region, shorter_side)
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    image = augment.resize_bilinear(image, [image_size, image_size])
    image.set_shape([image_size, image_size, 3])
    return image


def decode_and_random_crop_uint8(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227,
    crop_region: str = augment.PAPER_CROP_REGION, shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """uint8 [S, S, 3]: `decode_and_random_crop`'s crop, as the accelerator receives it.

    A window of exactly S pixels (every window of a 256 x 256 record, at S = 227) needs no
    resize: the decoded pixels are the crop, bit for bit what the float path gives, without
    a float copy. A window that must be resized is rounded back to uint8 afterwards, a change
    of at most 0.5 on the 0..255 scale (JPEG's own error on these images is several times
    that, the lighting noise's standard deviation about 5).
    """
    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    window = augment.random_crop_window(
        shape[0], shape[1], image_size, seed, crop_region, shorter_side)
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    image = tf.cond(
        tf.equal(window[2], image_size),
        lambda: image,
        lambda: tf.cast(tf.round(augment.resize_bilinear(image, [image_size, image_size])),
                        tf.uint8),
    )
    image.set_shape([image_size, image_size, 3])
    return image


def augment_for_train(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227, lighting: bool = True,
    crop_region: str = augment.PAPER_CROP_REGION, shorter_side: int = augment.SHORTER_SIDE,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 [S, S, 3] crop, float32 [3] offset): the host's share of the paper's augmentation.

    Random crop of the 256-scaled image and random mirror on uint8 pixels; the offset is minus
    the mean plus this image's PCA lighting draw (`augment.pixel_offset`), for the accelerator
    to add (`device_input.to_model_input`). `seed` ([2] int) drives every random choice, as
    before the split, so a seed gives the same crop, mirror and lighting as it always did.
    """
    crop_seed, flip_seed, lighting_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3)
    )
    image = decode_and_random_crop_uint8(
        jpeg_bytes, crop_seed, image_size, crop_region, shorter_side)
    image = augment.random_flip(image, flip_seed)
    shift = augment.lighting_shift(lighting_seed) if lighting else None
    return image, augment.pixel_offset(shift)


def preprocess_for_train(
    jpeg_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = 227, lighting: bool = True,
    crop_region: str = augment.PAPER_CROP_REGION, shorter_side: int = augment.SHORTER_SIDE,
) -> tf.Tensor:
    """float32 [S, S, 3]: random crop of the 256-scaled image, random mirror, lighting, mean.

    Records are always RGB JPEG (the converter re-encodes anything else), so this may use
    JPEG-only ops. `seed` ([2] int) drives every random choice for this image. The trainer
    runs the last step (cast and offset) on the accelerator instead (`build_dataset`'s
    `finish_on_device`); this is the same computation on the host.
    """
    image, offset = augment_for_train(
        jpeg_bytes, seed, image_size, lighting, crop_region, shorter_side)
    return augment.add_per_channel(tf.cast(image, tf.float32), offset)


def _matching_files(file_pattern: str | Sequence[str]) -> list[str]:
    """The files of a glob pattern, sorted; a list of files (a manifest's shards) as given."""
    if not isinstance(file_pattern, str):
        files = list(file_pattern)
        if not files:
            raise ValueError("the list of record files is empty")
        return files
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise ValueError(f"no files match the pattern {file_pattern!r}")
    return files


def _validate_arguments(
    *, training: bool, finish_on_device: bool, batch_size: int, image_size: int,
    shorter_side: int, ten_crop: bool, shuffle_buffer: int, eval_function: Callable | None,
) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 1 <= shorter_side <= augment.SHORTER_SIDE:
        raise ValueError(
            f"shorter_side must be in [1, {augment.SHORTER_SIDE}], got {shorter_side}")
    if not 1 <= image_size <= shorter_side:
        raise ValueError(
            f"image_size must be in [1, {shorter_side}] (crops come from the image "
            f"scaled to {shorter_side}), got {image_size}"
        )
    if finish_on_device and not training:
        raise ValueError("finish_on_device is for training batches; it needs training=True")
    if ten_crop and training:
        raise ValueError("ten_crop is the test-time protocol; it needs training=False")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")
    if eval_function is not None and training:
        raise ValueError("eval_function prepares evaluation images; it needs training=False")


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


# Seeds of one pass over the data: (base seed, epoch, repetition within the epoch) packed into
# one int64, so every pass of every epoch shuffles and augments differently, reproducibly.
_EPOCH_BITS = 20
_PASS_BITS = 10
_RECORD_BITS = 32  # record position within its file, in the per-record key


def shards_by_file(num_files: int, num_pipelines: int) -> bool:
    """Whether n pipelines split the input by file (tf.data's FILE policy) or by record (DATA).

    By file when the files divide evenly over the pipelines: then each reads only its own
    files, and since the converter balances its shards to within one record, every pipeline
    holds the same share. Otherwise by record: each pipeline reads every file and keeps every
    n-th record, more reading for the same balance (an uneven split would leave some workers
    short of batches at an epoch's end and others waiting for them).
    """
    return num_pipelines > 1 and num_files % num_pipelines == 0


def _pass_seed(base_seed: tf.Tensor, epoch: tf.Tensor, repetition: tf.Tensor) -> tf.Tensor:
    base_seed = tf.cast(base_seed, tf.int64) % (1 << (63 - _EPOCH_BITS - _PASS_BITS))
    epoch = tf.cast(epoch, tf.int64) % (1 << _EPOCH_BITS)
    repetition = tf.cast(repetition, tf.int64) % (1 << _PASS_BITS)
    return base_seed * (1 << (_EPOCH_BITS + _PASS_BITS)) + epoch * (1 << _PASS_BITS) + repetition


def _keyed_records(files: tf.data.Dataset, *, cycle_length: int, deterministic: bool):
    """(serialized record, key) pairs, where key = file index << 32 | position in the file.

    The key names a record whatever the sharding, the worker count or the read order, so
    the augmentation drawn from it is the same for that record on one machine or eight.
    """

    def read(file_index, path):
        # Zipping with a range numbers the records as `enumerate().map(...)` would, without a
        # function call per record (about 0.05 CPU ms of the ~1.3 ms an image takes).
        first_key = file_index * (1 << _RECORD_BITS)
        return tf.data.Dataset.zip(
            tf.data.TFRecordDataset(path),
            tf.data.Dataset.range(first_key, first_key + (1 << _RECORD_BITS)),
        )

    return files.interleave(
        read, cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def _ignore_global_seed() -> None:
    """Makes the seeded shuffles of the dataset function being traced ignore TF's global seed.

    tf.data pairs an op's seed with the global one (`tf.random.set_seed`, which the trainer's
    `--seed` and `keras.utils.set_random_seed` set): with one set, every order drawn here
    would change with it, and a global seed of 0 makes a tensor seed fail outright
    (OperatorNotAllowedInGraphError). Clearing the seed of the function's own graph makes an
    op seed mean the same with or without a global seed, and leaves the caller's state alone.
    """
    if not tf.executing_eagerly():
        tf.compat.v1.get_default_graph().seed = None


def _augmentation_seed(pass_seed: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """The [2] seed of every random choice for one record in one pass."""
    return tf.stack([pass_seed, key])


def _training_records(
    files: list[str],
    *,
    num_pipelines: int,
    pipeline_id: int,
    shuffle_buffer: int,
    base_seed: int,
    deterministic: bool,
    cache: bool,
    records_per_epoch: int | None,
    repeat: bool,
    first_epoch: int,
    skip_records: int,
) -> tf.data.Dataset:
    """((serialized record, record key), pass seed) for training, epoch after epoch.

    The record's [2] augmentation seed is [pass seed, record key] (`_augmentation_seed`).

    Each pass over the data is a function of (base seed, epoch, repetition): its file order,
    its shuffle and each record's augmentation seed. So, with a fixed seed, a run resumed at
    epoch e (and `skip_records` into it) reads exactly what an uninterrupted run reads there,
    and with record sharding the n pipelines' shares of each step add up to the very global
    batch a single pipeline would draw (the common order is shuffled before it is dealt).
    """
    shard_by_file = shards_by_file(len(files), num_pipelines)
    shard_by_record = num_pipelines > 1 and not shard_by_file
    # Without a seed the workers draw different orders, so each may only shuffle its own deal.
    shuffle_before_dealing = shard_by_record and deterministic
    cycle_length = min(len(files), 16)
    # The sorted list, so every pipeline sees the same list before it takes its shard.
    indexed_files = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(files), dtype=tf.int64), files)
    )
    if shard_by_file:
        indexed_files = indexed_files.shard(num_pipelines, pipeline_id)

    def deal(records):
        return records.shard(num_pipelines, pipeline_id) if shard_by_record else records

    def read(files_in_order):
        # Dealing by record needs the same order in every pipeline.
        records = _keyed_records(files_in_order, cycle_length=cycle_length,
                                 deterministic=deterministic or shard_by_record)
        return records if shuffle_before_dealing else deal(records)

    cached = read(indexed_files).cache() if cache else None

    def one_pass(pass_seed):
        _ignore_global_seed()
        if cached is not None:
            records = cached
        else:
            records = read(indexed_files.shuffle(len(files), seed=pass_seed))
        records = records.shuffle(shuffle_buffer, seed=pass_seed)
        if shuffle_before_dealing:
            records = deal(records)
        # The pass seed rides along by zip rather than a per-record map (a function call per
        # record); the per-image map stacks (pass seed, key) into the record's [2] seed.
        return tf.data.Dataset.zip(records, tf.data.Dataset.from_tensors(pass_seed).repeat())

    def one_epoch(epoch, salt):
        passes = tf.data.Dataset.range(1 << _PASS_BITS)
        if records_per_epoch is None:
            passes = passes.take(1)
        records = passes.flat_map(
            lambda repetition: one_pass(_pass_seed(base_seed + salt, epoch, repetition)))
        if records_per_epoch is not None:
            records = records.take(records_per_epoch)
        return records

    if not repeat:
        # Iterating the same dataset again (a custom loop's next epoch) draws new crops and
        # a new order, reproducibly for a fixed seed.
        salts = tf.data.Dataset.random(seed=base_seed, rerandomize_each_iteration=True)
        epoch = tf.constant(first_epoch, tf.int64)
        return salts.take(1).flat_map(lambda salt: one_epoch(epoch, salt))
    epochs = tf.data.Dataset.range(first_epoch, 1 << _EPOCH_BITS)
    dataset = epochs.flat_map(lambda epoch: one_epoch(epoch, tf.constant(0, tf.int64)))
    return dataset.skip(skip_records) if skip_records else dataset


def build_dataset(
    file_pattern: str | Sequence[str],
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
    first_epoch: int = 0,
    batches_per_epoch: int | None = None,
    skip_batches: int = 0,
    pad_to_examples: int | None = None,
    crop_region: str = augment.PAPER_CROP_REGION,
    shorter_side: int = augment.SHORTER_SIDE,
    finish_on_device: bool = False,
    eval_function: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """(images, labels) batches from the converter's TFRecord shards (a glob or a list of files).

    images: float32 [B, S, S, 3] (or [B, 10, S, S, 3] with `ten_crop`), mean-subtracted pixels
    on the 0..255 scale; labels: int32 [B], 0-based (the record's label minus `label_offset`,
    so records written with the 1..1000 convention read back as 0..999).

    Distribution: with `input_context` (from `strategy.distribute_datasets_from_function`),
    `batch_size` is the GLOBAL batch, each pipeline yields per-replica batches
    (`input_context.get_per_replica_batch_size`), and pipeline i of n keeps
      - the files i, i+n, i+2n, ... of the sorted file list when the files divide evenly over
        the n pipelines (no pipeline reads what it throws away: tf.data's FILE policy),
      - otherwise the records i, i+n, ... of a common order of all records (the DATA policy);
    see `shards_by_file`. Either way the n pipelines together see every record exactly once
    per epoch. tf.data's own auto-sharding is switched off, since this has sharded already.

    Training epochs (with `repeat`): epoch e is a function of (`seed`, e) alone: its file
    and record order, and each record's crop, mirror and lighting draw (keyed by the record,
    not by its position). `batches_per_epoch` fixes how many batches each epoch yields (passes
    over the data are added or cut to fit), `first_epoch` and `skip_batches` start the stream
    where a resumed run left off. With a `seed` that makes resuming exact and, with record
    sharding, makes the global batch of every step the one a single pipeline would give; the
    parallel reads and maps then keep their order, at some cost in speed. Without a seed
    the order is left free for speed and each run draws its own.

    Evaluation reads in file order and yields every record once.

    `cache` keeps the serialized records in memory after the first epoch (for small corpora);
    decoding and augmentation still run every epoch, so training crops stay random.
    `drop_remainder` defaults to `training`, so evaluation sees every record.
    `pad_to_examples` (evaluation) appends zero-weight examples up to that many and yields
    (images, labels, weights), so that every replica gets whole batches (alexnet_tf/data/validation.py).
    `crop_region` is where training crops and ten crops lie (`augment.CROP_REGIONS`).
    `shorter_side` is the side images are scaled to before training crops, centre crops and ten
    crops are cut (the paper's 256): each crop covers image_size / shorter_side of it.
    `eval_function` (evaluation only): JPEG bytes -> the float32 image, or with `ten_crop` the
    [10, S, S, 3] crops, to score, for weights that expect other preprocessing than the
    paper's (`alexnet_tf.data.eval_preprocessing`, from the model's model_info.json).

    `finish_on_device` (training only): yield ((uint8 [B, S, S, 3] crops, float32 [B, 3]
    offsets), labels) and leave the cast and the offset (mean and lighting) to the training
    step (train/steps.py): a quarter of the bytes per batch, and less
    work per image on the host. Same values once finished (`device_input.to_model_input`).
    """
    if crop_region not in augment.CROP_REGIONS:
        raise ValueError(f"crop_region must be one of {augment.CROP_REGIONS}, got {crop_region!r}")
    _validate_arguments(
        training=training, finish_on_device=finish_on_device,
        batch_size=batch_size,
        image_size=image_size,
        shorter_side=shorter_side,
        ten_crop=ten_crop,
        shuffle_buffer=shuffle_buffer,
        eval_function=eval_function,
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
    parse_spec = records.PARSE_SPEC

    if training:
        if seed is None:
            seed = random.SystemRandom().randrange(1 << 31)
        dataset = _training_records(
            files, num_pipelines=num_pipelines, pipeline_id=pipeline_id,
            shuffle_buffer=shuffle_buffer, base_seed=seed, deterministic=deterministic,
            cache=cache, repeat=repeat, first_epoch=first_epoch,
            records_per_epoch=batches_per_epoch and batches_per_epoch * per_replica_batch,
            skip_records=skip_batches * per_replica_batch,
        )

        def parse_and_augment(record_and_key, pass_seed):
            serialized, key = record_and_key
            example = tf.io.parse_single_example(serialized, parse_spec)
            image, offset = augment_for_train(
                example[records.ENCODED], _augmentation_seed(pass_seed, key), image_size, lighting,
                crop_region, shorter_side,
            )
            if not finish_on_device:
                image = augment.add_per_channel(tf.cast(image, tf.float32), offset)
                return image, _labels(example[records.LABEL], label_offset)
            return (image, offset), _labels(example[records.LABEL], label_offset)

        dataset = dataset.map(
            parse_and_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
    else:
        shard_by_file = shards_by_file(len(files), num_pipelines)
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if shard_by_file:
            dataset = dataset.shard(num_pipelines, pipeline_id)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if num_pipelines > 1 and not shard_by_file:
            dataset = dataset.shard(num_pipelines, pipeline_id)
        if cache:
            dataset = dataset.cache()
        if repeat:
            dataset = dataset.repeat()
        def preprocess(image_bytes, size):
            if eval_function is not None:
                return eval_function(image_bytes)
            if ten_crop:
                return preprocess_for_ten_crop(image_bytes, size, crop_region, shorter_side)
            return preprocess_for_eval(image_bytes, size, shorter_side=shorter_side)

        def parse_and_preprocess(serialized):
            example = tf.io.parse_single_example(serialized, parse_spec)
            image = preprocess(example[records.ENCODED], image_size)
            return image, _labels(example[records.LABEL], label_offset)

        dataset = dataset.map(parse_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        if pad_to_examples is not None:
            dataset = validation.pad_with_weightless(dataset, pad_to_examples)

    dataset = dataset.batch(per_replica_batch, drop_remainder=drop_remainder)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
    return dataset.with_options(options)
