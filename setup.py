"""Installs alexnet_tf: the paper's AlexNet from raw ImageNet to TensorFlow Serving."""

import setuptools

setuptools.setup(
    name="alexnet_tf",
    version="0.1.0",
    description=(
        "AlexNet (Krizhevsky et al., 2012) in TensorFlow/Keras: ImageNet to TFRecords, "
        "training under tf.distribute, export for TensorFlow Serving."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["alexnet_tf", "alexnet_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21",
        "keras>=3.15",
        "tensorflow-datasets",
        "absl-py",
        "numpy",
        # Pillow reads what TF's decoders cannot (WebP, CMYK/YCCK with Adobe inversion,
        # 16-bit PNG) and checks an image's size from its header before decoding, which is
        # how the converter rejects decompression bombs without allocating them.
        "pillow>=10",
        # The trainer draws its loss/top-1/top-5 curves to a PNG next to summary.json.
        "matplotlib",
        # The exporter writes TF Serving's warmup file (PredictionLog protos) and models.config
        # (ModelServerConfig) with the protos that TF Serving itself publishes.
        "tensorflow-serving-api",
        # keras.callbacks.TensorBoard needs it, and TensorFlow 2.21 no longer installs it.
        "tensorboard",
    ],
    extras_require={
        # import_weights reads torchvision's .pth files with torch.load(weights_only=True),
        # the one reader of torch's pickle format that refuses to run code; nothing else
        # needs torch, so it is optional (pip install 'alexnet_tf[torch]').
        "torch": ["torch>=2.4"],
        # import_weights reads .safetensors files without torch: a JSON header and raw
        # arrays, no pickle, so no code can run on loading. Small (one wheel, no deps).
        "safetensors": ["safetensors>=0.4"],
        # The import tests write torchvision's network with torch and compare its logits.
        # Pinned to the CPU build that CI's machines hold locally; an open range would pull
        # a multi-GB CUDA wheel into every test environment.
        # pytest-xdist runs the tests on every core (tools/test.sh): most of them wait on
        # single-threaded subprocesses, and two workers took CI's 2-core run from 22m51s to 15m39s.
        # hypothesis drives the differential fuzzing of the serving decoder
        # (tests/test_decode_fuzzing.py): seeded, shrinking mutations of real image files, which
        # a hand-rolled loop would find and report less well.
        "test": ["pytest", "pytest-xdist>=3.8", "torch==2.13.0", "safetensors>=0.4", "hypothesis"],
        "gpu": ["tensorflow[and-cuda]>=2.21"],
        # The peer that benchmarks/train_throughput.py measures against; never needed to run us.
        "bench": ["torch==2.13.0"],
    },
    entry_points={
        "console_scripts": [
            "alexnet-build-tfrecords=alexnet_tf.convert.cli:run",
            "alexnet-export=alexnet_tf.export.exporter:run",
            "alexnet-predict=alexnet_tf.predict:run",
            "alexnet-import-weights=alexnet_tf.import_weights:run",
        ],
    },
)
