"""alexnet_tf: the 2012 AlexNet, from the raw ImageNet download to TensorFlow Serving.

The folders are the stages, in the order data flows through them (one way: a stage imports only
the stages above it and the shared facts):

    convert/         raw images -> TFRecord shards, labels.txt, manifest.json (tools/build_tfrecords.py)
    data/            shards -> tf.data batches: record format, pipelines, augmentation, decoding
    model/           build_alexnet and its layers, model_info.json, checks on a model file
    import_weights   torchvision .pth/.safetensors -> model.keras (joins the flow at model/)
    train/           python -m alexnet_tf.train: the trainer and what runs around fit
    export/          python -m alexnet_tf.export: SavedModel, signatures, request limits, precision
    evaluate/        python -m alexnet_tf.evaluate: top-1/top-5, ten crops, per class
    predict          python -m alexnet_tf.predict: top-5 class names for image files, via the export
    demo/            the built-in demo corpus and the demo's closing report (tools/demo.sh)
    imagenet, labels, quiet_output, run_lock, command_help   facts and habits every stage shares

Why stages and not kinds (no utils/, no io/): a reader who knows the flow finds a file by the
stage it serves, and a change to one stage shows in one folder. Where a module serves two stages
(bounded image decoding: data and serving), it lives in the earlier one, so imports point downstream.
Importing the package is cheap on purpose (no TensorFlow import here), so the converter's worker
processes and the command-line tools start fast.
"""

__version__ = "0.1.0"
