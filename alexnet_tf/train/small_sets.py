"""The warning a from-scratch run on few photos per class gets before it trains.

A run from scratch on a small set can spend its epochs near chance and end without saying why
(issue 19: 116 photos of 5 classes, 90 epochs of the old configs/paper.cfg, 15.4% top-1 against
a chance of 20%), and the user never hears of the other route, fine-tuning a trained model.
Measured on Imagenette (benchmarks/README.md, "Transfer to new classes"): configs/imagenette.cfg
does leave chance from 10 or 50 photos per class, but ends far below what many photos give; the
line below is where this warning starts, between the issue's 23 per class and Imagenette's ~940,
not a measured edge.
"""

from __future__ import annotations

# Below this many training photos per class, a from-scratch run is warned.
MIN_PHOTOS_PER_CLASS_FROM_SCRATCH = 100


def from_scratch_warning(train_images: int, num_classes: int) -> str | None:
    """The warning for a run from scratch on `train_images` photos, or None when enough."""
    per_class = train_images / max(num_classes, 1)
    if per_class >= MIN_PHOTOS_PER_CLASS_FROM_SCRATCH:
        return None
    return (f"{train_images} training photos for {num_classes} classes ({per_class:.0f} per "
            f"class), from scratch: expect a model far weaker than many photos give (fewer than "
            f"{MIN_PHOTOS_PER_CLASS_FROM_SCRATCH} per class; benchmarks/README.md, 'Transfer to new "
            "classes'). The other route is to fine-tune a model trained on many photos: "
            "--init_from=MODEL.keras --train_layers=fc8 (or all), e.g. torchvision's ImageNet "
            "weights through python -m alexnet_tf.import_weights (README.md, 'Start from "
            "pretrained weights').")
