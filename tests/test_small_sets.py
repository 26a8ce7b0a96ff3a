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
