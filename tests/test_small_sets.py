"""The from-scratch warning's line: where it starts, and what it tells the user to do."""

from alexnet_tf.train import small_sets


def test_fewer_photos_per_class_than_the_measured_line_get_the_fine_tuning_route():
    line = small_sets.MIN_PHOTOS_PER_CLASS_FROM_SCRATCH
    warning = small_sets.from_scratch_warning(5 * line - 1, 5)
    assert warning is not None and warning.startswith(f"{5 * line - 1} training photos for 5 ")
    assert "--init_from=" in warning and "alexnet_tf.import_weights" in warning
    assert small_sets.from_scratch_warning(5 * line, 5) is None
    # Issue 19's case: 116 photos of 5 classes.
    assert "(23 per class)" in small_sets.from_scratch_warning(116, 5)


def test_the_warning_counts_the_classes_the_records_hold_not_the_fc8_width(tmp_path):
    """The demo's case: records of a few ImageNet classes train a 1000-way fc8 (ImageNet label
    ids), so dividing by --num_classes=1000 told its 3,000 drawings they were "3 per class"."""
    import json
    import os

    from alexnet_tf import imagenet
    from tests.record_fixtures import write_records
    from tests.test_train import run_trainer

    classes, per_class = 3, 12
    write_records(str(tmp_path), split="train", num_classes=classes, images_per_class=per_class,
                  num_shards=1, label_offset=0)
    # What the converter writes for ImageNet-labelled records: no labels.txt, synsets per split.
    manifest = {"options": {"label_offset": 0},
                "splits": {"train": {"images": classes * per_class,
                                     "classes": {s: per_class
                                                 for s in imagenet.synsets()[:classes]}}}}
    with open(os.path.join(tmp_path, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    result = run_trainer(str(tmp_path), str(tmp_path / "model"), "--num_classes=1000",
                         "--novalidation", "--lr_schedule=step", "--epochs=1",
                         "--train_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "training photos for" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "36 training photos for 3 classes (12 per class)" in warnings[0], warnings[0]
