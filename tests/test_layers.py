"""LocalResponseNormalization against the paper's formula, and GroupedConv2D's grouping."""

import keras
import numpy as np
import pytest

from alexnet_tf.model.layers import (
    LRN_SETTINGS,
    GroupedConv2D,
    LocalResponseNormalization,
    resolve_grouped_conv,
)


def paper_lrn(activations: np.ndarray, n: int, k: float, alpha: float, beta: float) -> np.ndarray:
    """Section 3.3, term by term: the sum runs over max(0, i - n/2) .. min(N - 1, i + n/2)."""
    num_maps = activations.shape[-1]
    normalized = np.empty_like(activations, dtype=np.float64)
    for i in range(num_maps):
        window = activations[..., max(0, i - n // 2) : min(num_maps - 1, i + n // 2) + 1]
        normalized[..., i] = activations[..., i] / (k + alpha * np.sum(window**2, axis=-1)) ** beta
    return normalized


def test_lrn_defaults_are_the_papers_and_match_its_formula():
    # Activations of ~30 make alpha * sum(a^2) about 0.45 next to k = 2, so a layer that
    # divided alpha by n (Caffe's convention) would be off by about 12%.
    activations = np.random.default_rng(0).normal(0, 30, (2, 3, 4, 7)).astype(np.float32)
    layer = LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.75)
    expected = paper_lrn(activations.astype(np.float64), n=5, k=2.0, alpha=1e-4, beta=0.75)
    np.testing.assert_allclose(np.asarray(layer(activations)), expected, rtol=1e-5)


def caffe_lrn(activations: np.ndarray, local_size: int, alpha: float, beta: float) -> np.ndarray:
    """Caffe's LRNLayer (ACROSS_CHANNELS), term by term: scale = k + alpha / n * sum(a^2),
    k = 1 (its default), the window zero-padded at the edges."""
    num_maps = activations.shape[-1]
    padded = np.pad(activations, [(0, 0)] * (activations.ndim - 1)
                    + [(local_size // 2, local_size // 2)])
    normalized = np.empty_like(activations, dtype=np.float64)
    for i in range(num_maps):
        window = padded[..., i : i + local_size]
        scale = 1.0 + alpha / local_size * np.sum(window**2, axis=-1)
        normalized[..., i] = activations[..., i] / scale**beta
    return normalized


def test_caffe_lrn_settings_compute_bvlc_alexnets_lrn_from_its_prototxt_values():
    # bvlc_alexnet's prototxt: local_size 5, alpha 1e-4, beta 0.75 (k left at 1). Activations
    # of ~100 make alpha/n * sum(a^2) about 0.1: the paper's k = 2 or an undivided alpha
    # would each be off by far more than the tolerance.
    activations = np.random.default_rng(1).normal(0, 100, (2, 3, 4, 9)).astype(np.float32)
    layer = LocalResponseNormalization(**LRN_SETTINGS["caffe"])
    expected = caffe_lrn(activations.astype(np.float64), local_size=5, alpha=1e-4, beta=0.75)
    np.testing.assert_allclose(np.asarray(layer(activations)), expected, rtol=1e-5)
    paper = LocalResponseNormalization(**LRN_SETTINGS["paper"])
    assert not np.allclose(np.asarray(paper(activations)), expected, rtol=1e-2)


def test_lrn_window_is_clipped_at_the_first_and_last_channel():
    # A large alpha makes the window dominate, so a wrong edge would show.
    activations = np.random.default_rng(1).normal(0, 1, (1, 2, 2, 6)).astype(np.float32)
    layer = LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=0.5, beta=0.5)
    expected = paper_lrn(activations.astype(np.float64), n=3, k=1.0, alpha=0.5, beta=0.5)
    np.testing.assert_allclose(np.asarray(layer(activations)), expected, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lrn_runs_under_mixed_precision_and_keeps_the_compute_dtype(policy):
    activations = np.random.default_rng(2).normal(0, 30, (2, 5, 5, 8)).astype(np.float32)
    expected = paper_lrn(activations.astype(np.float64), n=5, k=2.0, alpha=1e-4, beta=0.75)
    keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = keras.Input((5, 5, 8))
        model = keras.Model(inputs, LocalResponseNormalization()(inputs))
        outputs = model.predict(activations, verbose=0)  # graph mode, like training
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs.dtype == np.dtype(keras.DTypePolicy(policy).compute_dtype)
    np.testing.assert_allclose(outputs.astype(np.float64), expected, rtol=2e-2, atol=2e-2)


def test_lrn_config_round_trips_through_keras_serialization():
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=2e-5, beta=0.5, name="lrn")
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "alexnet_tf>LocalResponseNormalization"
    restored = keras.saving.deserialize_keras_object(config)
    restored_settings = (restored.depth_radius, restored.bias, restored.alpha, restored.beta)
    assert restored_settings == (3, 1.0, 2e-5, 0.5)
    assert restored.name == "lrn"


def test_lrn_rejects_a_negative_depth_radius():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)


def _grouped_pair(groups: int = 2):
    towers = GroupedConv2D(6, 3, groups=groups, padding="same", implementation="towers")
    native = GroupedConv2D(6, 3, groups=groups, padding="same", implementation="native")
    towers.build((None, 7, 7, 4))
    native.build((None, 7, 7, 4))
    native.set_weights(towers.get_weights())
    return towers, native


def test_grouped_conv_holds_the_papers_weights():
    towers, native = _grouped_pair()
    # Each group's kernels see 4 / 2 input channels: 3 * 3 * 2 * 6 weights + 6 biases.
    assert towers.kernel.shape == native.kernel.shape == (3, 3, 2, 6)
    assert towers.count_params() == native.count_params() == 3 * 3 * 2 * 6 + 6


def test_towers_and_native_grouped_conv_agree_on_the_same_weights():
    towers, native = _grouped_pair()
    inputs = np.random.default_rng(3).normal(0, 1, (2, 7, 7, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(towers(inputs)), np.asarray(native(inputs)), atol=1e-5)


@pytest.mark.parametrize("implementation", ["towers", "native"])
def test_each_group_sees_only_its_half_of_the_input_channels(implementation):
    layer = GroupedConv2D(6, 3, groups=2, padding="same", implementation=implementation)
    inputs = np.random.default_rng(4).normal(0, 1, (1, 7, 7, 4)).astype(np.float32)
    changed = inputs.copy()
    changed[..., 2:] += 1.0  # only the second group's input channels
    before, after = np.asarray(layer(inputs)), np.asarray(layer(changed))
    np.testing.assert_array_equal(before[..., :3], after[..., :3])
    assert np.abs(before[..., 3:] - after[..., 3:]).max() > 1e-3


def test_grouped_conv_config_keeps_the_requested_implementation():
    layer = GroupedConv2D(4, 3, groups=2, implementation="auto", name="conv2")
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "alexnet_tf>GroupedConv2D"
    restored = keras.saving.deserialize_keras_object(config)
    assert (restored.implementation, restored.groups, restored.filters) == ("auto", 2, 4)
    assert restored.resolved_implementation == resolve_grouped_conv("auto")


def test_auto_picks_towers_and_explicit_choices_stay():
    assert resolve_grouped_conv("auto") == "towers"
    assert resolve_grouped_conv("native") == "native"
    assert resolve_grouped_conv("towers") == "towers"


def test_unknown_grouped_conv_implementation_is_rejected_with_the_choices():
    allowed = r"implementation must be one of \('auto', 'towers', 'native'\)"
    with pytest.raises(ValueError, match=allowed):
        GroupedConv2D(4, 3, groups=2, implementation="cudnn")
