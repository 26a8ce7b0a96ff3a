"""The precision of the served model: `--precision`, whatever policy the model was trained under.

A mixed_float16 model used to be exported with float16 convolutions, 84x slower on a CPU
server; these tests load what TF Serving would load and look at its arithmetic and answers.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.demo import corpus as demo_data
from alexnet_tf.export import precision
from alexnet_tf.export import exporter as export
from alexnet_tf.model import build_alexnet
from tests.test_export import (
    IMAGE_SIZE, NUM_CLASSES, informative_alexnet, run_cli, stored_weights,
)

_ARITHMETIC_OPS = {"Conv2D", "MatMul", "_FusedConv2D", "_FusedMatMul", "BatchMatMulV2"}


def trained_under(policy: str) -> keras.Model:
    """The same weights in a model built under `policy`, as training under it leaves them
    (mixed policies keep the variables in float32)."""
    weights = informative_alexnet().get_weights()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_alexnet(num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, initialization="he")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.set_weights(weights)
    return model


def arithmetic_dtypes(saved_model_dir: str) -> set[str]:
    """The dtypes TF Serving's convolutions and matrix products run in for serving_default."""
    function = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    graph = function.graph.as_graph_def()
    nodes = list(graph.node) + [node for f in graph.library.function for node in f.node_def]
    return {
        tf.dtypes.as_dtype(node.attr["T"].type).name
        for node in nodes
        if node.op in _ARITHMETIC_OPS and "T" in node.attr
    }


def real_looking_jpegs(count: int) -> list[bytes]:
    """Demo-corpus photos: shapes on textured backgrounds, of several sizes."""
    return [
        demo_data.draw_image(index % 10, np.random.default_rng(index)) for index in range(count)
    ]


def served_probabilities(saved_model_dir: str, jpegs: list[bytes]) -> np.ndarray:
    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    return serve(image_bytes=tf.constant(jpegs))["probabilities"].numpy()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return real_looking_jpegs(24)


@pytest.fixture(scope="module")
def float32_reference(tmp_path_factory, jpegs) -> np.ndarray:
    base = tmp_path_factory.mktemp("float32")
    path = export.export_model(trained_under("float32"), str(base))
    assert arithmetic_dtypes(path) == {"float32"}
    return served_probabilities(path, jpegs)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_is_exported_in_float32_by_default(
    policy, tmp_path, jpegs, float32_reference
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained_under(policy).save(str(run_dir / "model.keras"))

    result = run_cli(
        "alexnet_tf.export", f"--model={run_dir}", f"--export_base={tmp_path / 'serving'}",
        cwd=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    version = str(tmp_path / "serving" / "1")
    assert arithmetic_dtypes(version) == {"float32"}
    # Same weights (a mixed policy keeps them in float32), same arithmetic: same answers.
    np.testing.assert_allclose(served_probabilities(version, jpegs), float32_reference, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_a_bfloat16_export_answers_as_the_float32_one(policy, tmp_path, jpegs, float32_reference):
    path = export.export_model(trained_under(policy), str(tmp_path), precision="bfloat16")

    assert "bfloat16" in arithmetic_dtypes(path)
    probabilities = served_probabilities(path, jpegs)
    assert probabilities.dtype == np.float32
    assert np.ptp(float32_reference, axis=0).max() > 0.1, "the answers barely depend on the image"
    np.testing.assert_allclose(probabilities, float32_reference, atol=1e-2)
    np.testing.assert_array_equal(probabilities.argmax(-1), float32_reference.argmax(-1))
    # Each weight stored once, in bfloat16 except fc8's float32 (0.08% of the parameters).
    parameters = trained_under(policy).count_params()
    assert stored_weights(path)[1] == pytest.approx(2 * parameters, rel=0.05)


def test_the_bfloat16_copy_keeps_the_logits_in_float32_and_halves_the_weights():
    model = trained_under("float32")
    copy = precision.with_precision(model, "bfloat16")

    assert copy.get_layer("fc8").dtype_policy.name == "float32"
    assert copy.get_layer("fc6").kernel.dtype == "bfloat16"
    assert precision.with_precision(model, "float32") is model
    images = np.random.default_rng(0).normal(0, 60, (2, IMAGE_SIZE, IMAGE_SIZE, 3))
    assert copy(images.astype(np.float32)).dtype == "float32"


def test_an_unknown_precision_is_refused_in_one_line(tmp_path):
    result = run_cli(
        "alexnet_tf.export", f"--model={tmp_path / 'model.keras'}",
        f"--export_base={tmp_path / 'serving'}", "--precision=float16", cwd=str(tmp_path),
    )
    assert result.returncode != 0
    assert "--precision" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module", autouse=True)
def _no_global_seed_left_behind():
    """informative_alexnet sets TensorFlow's global seed; later test modules in the same
    process start from TensorFlow's default state instead of inheriting it."""
    yield
    tf.random.set_seed(None)
