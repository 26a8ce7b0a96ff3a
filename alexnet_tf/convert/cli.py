"""Command line of the converter: `python tools/build_tfrecords.py --input_dir=RAW --output_dir=OUT`."""

from __future__ import annotations

import sys

from absl import app, flags, logging

from alexnet_tf import command_help
from alexnet_tf.convert import layouts, main as conversion, manifest
from alexnet_tf.convert.images import DEFAULT_MAX_PIXELS
from alexnet_tf.convert.resize import DEFAULT_JPEG_QUALITY, ResizeOptions

FLAGS = flags.FLAGS

flags.DEFINE_string("input_dir", None, "Raw images: class folders (<class>/* or train/<class>/*), or "
                    "ImageNet's extracted train/ and val/ folders, the Kaggle CLS-LOC download, or the "
                    "folder holding ILSVRC2012_img_{train,val}.tar.")
flags.DEFINE_string("output_dir", None, "Where the shards and manifest.json go (created if needed).")
flags.DEFINE_integer("train_shards", 1024, "Number of training shards.", lower_bound=1)
flags.DEFINE_integer("validation_shards", 128, "Number of validation shards.", lower_bound=1)
flags.DEFINE_integer("num_workers", 0, "Worker processes; 0 uses every core.", lower_bound=0)
flags.DEFINE_integer("label_offset", 0, "Added to the 0-based class index: 1 gives the 1..1000 labels of "
                     "the TF-slim/inception/TPU records.", lower_bound=0)
flags.DEFINE_enum("layout", "auto", ["auto", *layouts.LAYOUTS], "Input layout; auto detects it.")
flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS, "Images with more pixels are skipped as "
                     "decompression bombs (checked from the header, before decoding).", lower_bound=1)
flags.DEFINE_integer("shuffle_seed", conversion.DEFAULT_SHUFFLE_SEED, "Seed of the fixed shuffle of "
                     "training images across shards.")
flags.DEFINE_integer("resize_shorter_side", None, "Store images scaled down (antialiased) so their "
                     "shorter side is this many pixels, as the paper's 256 (section 2); smaller "
                     "images are never scaled up. Default: the originals, byte for byte.", lower_bound=1)
flags.DEFINE_bool("center_crop", False, "With --resize_shorter_side, keep only the central square "
                  "(the paper's 256x256 images).")
flags.DEFINE_integer("jpeg_quality", DEFAULT_JPEG_QUALITY, "JPEG quality of the images that "
                     "--resize_shorter_side or --center_crop changes.", lower_bound=1, upper_bound=100)
flags.DEFINE_float("progress_interval", 10.0, "Seconds between progress lines.", lower_bound=0.0)
flags.DEFINE_string("labels_file", None, "Class folders only: the class names in label order, one a "
                    "line; folders it does not list are skipped and reported. Default: the folder "
                    "names in code-point order.")
flags.DEFINE_float("validation_fraction", None, "Class folders without a val/ folder: hold out this share "
                   "of each class for validation, chosen by a hash of each file's name (stable when "
                   "images are added).")
flags.DEFINE_bool("verify", False, "Instead of converting, read every shard in --output_dir back and check "
                  "it against manifest.json (counts, checksums, every image decodes to its size).")
flags.mark_flag_as_required("output_dir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        if FLAGS.verify:
            checked, problems = manifest.verify_output(FLAGS.output_dir)
            for problem in problems:
                logging.error("%s", problem)
            if problems:
                logging.error("Verification FAILED: %d problems in %s", len(problems), FLAGS.output_dir)
                sys.exit(1)
            logging.info("Verified %s records in %s: all shards match the manifest", f"{checked:,}", FLAGS.output_dir)
            return
        if not FLAGS.input_dir:
            raise app.UsageError("--input_dir is required (unless --verify)")
        resize = ResizeOptions(FLAGS.resize_shorter_side, FLAGS.center_crop, FLAGS.jpeg_quality)
        conversion.convert(
            FLAGS.input_dir,
            FLAGS.output_dir,
            train_shards=FLAGS.train_shards,
            validation_shards=FLAGS.validation_shards,
            num_workers=FLAGS.num_workers,
            label_offset=FLAGS.label_offset,
            layout=FLAGS.layout,
            max_pixels=FLAGS.max_pixels,
            shuffle_seed=FLAGS.shuffle_seed,
            progress_interval=FLAGS.progress_interval,
            labels_file=FLAGS.labels_file,
            validation_fraction=FLAGS.validation_fraction,
            resize=resize,
        )
    except (ValueError, conversion.ConversionError) as error:
        logging.error("%s", error)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def run() -> None:
    """The console script's entry point (setup.py)."""
    command_help.show_in_help(sys.modules[__name__])
    app.run(main)
