"""The exported SavedModel: what TF Serving and its clients see, checked without a server.

One small model is built and exported once for the module; tests that need their own export
folder (versions, crashes, the command line) use a fresh one.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from alexnet_tf import imagenet
from alexnet_tf.data import records
from alexnet_tf.data import pipeline as data
from alexnet_tf.export import exporter as export
from alexnet_tf.export import signatures as serving
from alexnet_tf.model import build_alexnet, layers
from tests.record_fixtures import write_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 4
IMAGE_SIZE = 67


def run_cli(module: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_outputs_depend_on_the_image(probabilities: np.ndarray) -> None:
    """Guards the comparisons below: a model whose answer barely changes with the image
    would make "served equals Keras" true even for the wrong images."""
    spread = np.ptp(probabilities, axis=0).max()
    assert spread > 1e-2, f"probabilities vary by only {spread} across images"


def keras_probabilities(model: keras.Model, images) -> np.ndarray:
    logits = model(tf.convert_to_tensor(images, tf.float32), training=False)
    return tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()


def informative_alexnet(num_classes: int = NUM_CLASSES, **options) -> keras.Model:
    """A random AlexNet whose probabilities differ from image to image.

    He-initialised, its logits on 0..255-scale inputs are in the tens to hundreds and the
    softmax saturates (the paper's initialisation gives nearly equal logits instead); either
    way every image would get about the same probabilities. Scaling fc8 to logits of about
    unit spread keeps the answers apart, so "served equals Keras" can fail.
    """
    keras.utils.set_random_seed(0)
    model = build_alexnet(
        num_classes=num_classes, image_size=IMAGE_SIZE, initialization="he", **options
    )
    calibration = np.random.default_rng(0).normal(0, 60, (8, IMAGE_SIZE, IMAGE_SIZE, 3))
    logits = model(calibration.astype(np.float32), training=False).numpy().astype(np.float32)
    fc8 = model.get_layer("fc8")
    kernel, bias = fc8.get_weights()
    fc8.set_weights([kernel / logits.std(), bias])
    return model


@pytest.fixture(scope="module")
def model() -> keras.Model:
    # "native" grouped convolutions compile with XLA, which the export must not carry along.
    return informative_alexnet(grouped_conv="native")


@pytest.fixture(scope="module")
def synsets_file(tmp_path_factory) -> str:
    """A 4-class subset's class list, as the converter would list it (label order)."""
    path = tmp_path_factory.mktemp("classes") / "synsets.txt"
    path.write_text("\n".join(imagenet.synsets()[:NUM_CLASSES]) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def export_base(model, synsets_file, tmp_path_factory) -> str:
    base = str(tmp_path_factory.mktemp("serving") / "alexnet")
    export.export_model(model, base, synsets_file=synsets_file)
    return base


@pytest.fixture(scope="module")
def loaded(export_base):
    return tf.saved_model.load(os.path.join(export_base, "1"))


def test_export_writes_version_1_with_the_files_tf_serving_reads(export_base):
    assert sorted(os.listdir(export_base)) == [
        "1", "batching_parameters.txt", "models.config", "request.json"
    ]
    version_dir = os.path.join(export_base, "1")
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version_dir, "variables"))
    assert os.path.isfile(os.path.join(version_dir, export.WARMUP_FILE))


def stored_weights(saved_model_dir: str) -> tuple[int, int]:
    """(values, bytes) of the variables in a SavedModel's checkpoint, as a server reads them."""
    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    values = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    return sum(values.values()), sum(values[name] * dtypes[name].size for name in values)


def test_the_saved_model_stores_each_weight_once(model, export_base):
    values, size = stored_weights(os.path.join(export_base, "1"))

    # Keras's ExportArchive used to save its tracked Keras variables and the tf.Variables
    # its endpoints use under two names: twice the parameters, twice the disk.
    assert values == pytest.approx(model.count_params(), rel=0.05)
    assert size == pytest.approx(4 * model.count_params(), rel=0.05)


def test_saved_model_runs_grouped_convolutions_without_xla(model, export_base):
    with open(os.path.join(export_base, "1", "saved_model.pb"), "rb") as handle:
        graph = handle.read()
    assert b"XlaMustCompile" not in graph
    assert b"Conv2D" in graph
    grouped = [layer for layer in model.layers if isinstance(layer, layers.GroupedConv2D)]
    assert grouped and all(layer.resolved_implementation == "native" for layer in grouped)


def test_models_config_parses_as_a_model_server_config(export_base):
    with open(os.path.join(export_base, "models.config")) as handle:
        config = text_format.Parse(handle.read(), model_server_config_pb2.ModelServerConfig())
    (model_config,) = config.model_config_list.config
    assert model_config.name == "alexnet"
    assert model_config.base_path == os.path.abspath(export_base)
    assert os.path.isabs(model_config.base_path)
    assert model_config.model_platform == "tensorflow"


def test_request_json_is_a_rest_request_the_model_answers(export_base, loaded):
    with open(os.path.join(export_base, "request.json")) as handle:
        request = json.load(handle)
    assert request["signature_name"] == "serving_default"
    (instance,) = request["instances"]
    image_bytes = base64.b64decode(instance["b64"], validate=True)
    # What TF Serving does with a {"b64": ...} instance: a string tensor of the decoded bytes.
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant([image_bytes]))
    assert outputs["probabilities"].shape == (1, NUM_CLASSES)


def test_signatures_have_the_documented_inputs_and_outputs(loaded):
    default = loaded.signatures["serving_default"]
    (image_bytes,) = default.structured_input_signature[1].values()
    assert image_bytes.name == "image_bytes" and image_bytes.dtype == tf.string
    assert image_bytes.shape.as_list() == [None]
    images = loaded.signatures["predict_images"].structured_input_signature[1]["images"]
    assert images.dtype == tf.float32
    assert images.shape.as_list() == [None, IMAGE_SIZE, IMAGE_SIZE, 3]
    for signature in (default, loaded.signatures["predict_images"]):
        outputs = signature.structured_outputs
        assert outputs["probabilities"].dtype == tf.float32
        assert outputs["probabilities"].shape.as_list() == [None, NUM_CLASSES]
        assert outputs["classes"].dtype == tf.int64
        assert outputs["scores"].dtype == tf.float32
        assert outputs["synsets"].dtype == tf.string
        # Fewer than 5 classes: the top-k holds them all.
        assert outputs["classes"].shape.as_list() == [None, NUM_CLASSES]


def test_serving_default_on_jpeg_bytes_equals_keras_on_the_evaluation_pipeline(
    model, loaded, tmp_path
):
    (shard,) = write_records(
        str(tmp_path), split="validation", num_classes=NUM_CLASSES, images_per_class=3,
        num_shards=1,
    )
    raw = [
        tf.io.parse_single_example(serialized, records.PARSE_SPEC)
        for serialized in tf.data.TFRecordDataset(shard)
    ]
    jpeg_bytes = [example[records.ENCODED].numpy() for example in raw]
    record_labels = [int(example[records.LABEL]) for example in raw]
    batches = list(
        data.build_dataset(shard, training=False, batch_size=5, image_size=IMAGE_SIZE)
    )
    images = np.concatenate([batch_images.numpy() for batch_images, _ in batches])
    labels = np.concatenate([batch_labels.numpy() for _, batch_labels in batches])
    assert labels.tolist() == record_labels, "evaluation no longer reads records in file order"

    expected = keras_probabilities(model, images)
    assert_outputs_depend_on_the_image(expected)
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(jpeg_bytes))

    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-4)
    classes = served["classes"].numpy()
    np.testing.assert_array_equal(classes[:, 0], expected.argmax(axis=1))
    np.testing.assert_allclose(
        served["scores"].numpy(), np.take_along_axis(expected, classes, axis=1), atol=1e-4
    )
    assert np.all(np.diff(served["scores"].numpy(), axis=1) <= 0), "scores not best first"
    synsets = imagenet.synsets()
    assert served["synsets"].numpy().astype(str).tolist() == [
        [synsets[index] for index in row] for row in classes
    ]


def test_predict_images_equals_keras(model, loaded):
    # Red, green and blue squares, mean-subtracted like preprocess_for_eval's output.
    colours = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], np.float32)
    noise = np.random.default_rng(1).normal(0, 10, (3, IMAGE_SIZE, IMAGE_SIZE, 3))
    images = (colours[:, None, None, :] - imagenet.RGB_MEAN + noise).astype(np.float32)
    expected = keras_probabilities(model, images)
    assert_outputs_depend_on_the_image(expected)
    served = loaded.signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(served["classes"].numpy()[:, 0], expected.argmax(axis=1))


def test_warmup_requests_parse_and_replay_through_the_saved_model(export_base, loaded):
    path = os.path.join(export_base, "1", export.WARMUP_FILE)
    logs = []
    for serialized in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(serialized.numpy())
        logs.append(log)
    assert 1 <= len(logs) < 1000  # TF Serving replays at most 1000.
    seen_signatures, seen_formats = set(), set()
    for log in logs:
        request = log.predict_log.request
        signature_name = request.model_spec.signature_name
        seen_signatures.add(signature_name)
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        if signature_name == "serving_default":
            seen_formats.update(bytes(image[:4]) for image in inputs["image_bytes"])
        outputs = loaded.signatures[signature_name](
            **{name: tf.constant(value) for name, value in inputs.items()}
        )
        batch_size = len(next(iter(inputs.values())))
        assert outputs["probabilities"].shape == (batch_size, NUM_CLASSES)
    assert seen_signatures == {"serving_default", "predict_images"}
    assert b"\x89PNG" in seen_formats
    assert any(magic.startswith(b"\xff\xd8") for magic in seen_formats)  # JPEG


def test_a_corrupt_image_fails_its_request_and_the_next_request_works(loaded):
    serve = loaded.signatures["serving_default"]
    good = export.sample_images()[0][1]
    for bad in (b"this is not an image", good[: len(good) // 2], b""):
        with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)image|jpeg|input"):
            serve(image_bytes=tf.constant([good, bad]))
    outputs = serve(image_bytes=tf.constant([good]))
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(), 1.0, atol=1e-5)


def test_saved_model_loads_in_a_python_that_cannot_import_alexnet_tf(export_base, tmp_path):
    """Both ways: tf.saved_model.load, and the way TF Serving runs a SavedModel (a session
    restored from the tag "serve", fed and fetched by the SignatureDef's tensor names)."""
    script = textwrap.dedent(
        """
        import base64, json, sys
        sys.modules["alexnet_tf"] = None  # any `import alexnet_tf...` now raises ImportError
        try:
            import alexnet_tf.model.layers
        except ImportError:
            pass
        else:
            raise SystemExit("alexnet_tf is still importable")
        import tensorflow as tf
        base = sys.argv[1]
        request = json.load(open(base + "/request.json"))
        image = base64.b64decode(request["instances"][0]["b64"])

        loaded = tf.saved_model.load(base + "/1")
        outputs = loaded.signatures["serving_default"](image_bytes=tf.constant([image]))

        with tf.compat.v1.Session(graph=tf.Graph()) as session:
            meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], base + "/1")
            signature = meta_graph.signature_def["serving_default"]
            feed_name = signature.inputs["image_bytes"].name
            fetches = {key: info.name for key, info in signature.outputs.items()}
            try:
                session.run(fetches, {feed_name: [b"not an image"]})
            except tf.errors.InvalidArgumentError:
                corrupt_request_failed = True
            else:
                corrupt_request_failed = False
            answer = session.run(fetches, {feed_name: [image, image]})
        print(json.dumps({
            "signatures": sorted(loaded.signatures),
            "synsets": outputs["synsets"].numpy().astype(str).tolist(),
            "session_synsets": answer["synsets"].astype(str).tolist(),
            "corrupt_request_failed": corrupt_request_failed,
        }))
        """
    )
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script, os.path.abspath(export_base)],
        cwd=str(tmp_path), env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["signatures"] == ["predict_images", "serving_default"]
    assert set(answer["synsets"][0]) == set(imagenet.synsets()[:NUM_CLASSES])
    assert answer["session_synsets"] == answer["synsets"] * 2
    assert answer["corrupt_request_failed"]


def test_saved_model_cli_lists_both_signatures(export_base):
    tool = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    command = [tool] if tool else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = subprocess.run(
        [*command, "show", "--all", "--dir", os.path.join(export_base, "1")],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for expected in (
        "signature_def['serving_default']", "signature_def['predict_images']",
        "inputs['image_bytes']", "DT_STRING", "inputs['images']",
        "outputs['probabilities']", "outputs['classes']", "outputs['scores']",
        "outputs['synsets']", "tensorflow/serving/predict",
    ):
        assert expected in result.stdout, expected


def test_each_export_gets_the_next_version_and_none_is_overwritten(model, tmp_path):
    base = str(tmp_path / "alexnet")
    os.makedirs(os.path.join(base, "not-a-version"))
    assert export.export_model(model, base) == os.path.join(base, "1")
    assert export.export_model(model, base) == os.path.join(base, "2")
    assert export.export_model(model, base, version=7) == os.path.join(base, "7")
    assert serving.numeric_versions(base) == [1, 2, 7]
    with pytest.raises(export.ExportError, match=f"{os.path.join(base, '2')} already exists"):
        export.export_model(model, base, version=2)
    assert export.export_model(model, base) == os.path.join(base, "8")


def test_a_crash_mid_export_leaves_no_version_behind(model, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_warmup_requests", fail)
    base = str(tmp_path / "alexnet")
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, base)
    assert os.listdir(base) == []  # no version, and the temporary folder is gone too


def test_an_image_size_other_than_the_models_is_refused(model, tmp_path):
    with pytest.raises(export.ExportError, match="--image_size=99"):
        export.export_model(model, str(tmp_path / "alexnet"), image_size=99)


def test_class_names_follow_the_model_the_offset_and_the_class_list(tmp_path):
    synsets = list(imagenet.synsets())
    assert serving.class_labels(1000) == synsets
    assert serving.class_labels(1001, label_offset=1) == ["background"] + synsets
    assert serving.class_labels(3) == ["class_0", "class_1", "class_2"]
    listed_json = tmp_path / "classes.json"
    listed_json.write_text(json.dumps(synsets[:3]))
    assert serving.class_labels(3, synsets_file=str(listed_json)) == synsets[:3]
    listed = tmp_path / "classes.txt"
    listed.write_text("cat\ndog\n")
    assert serving.class_labels(3, label_offset=1, synsets_file=str(listed)) == [
        "background", "cat", "dog",
    ]
    with pytest.raises(serving.ClassListError, match=f"{listed}: lists 2 classes"):
        serving.class_labels(4, synsets_file=str(listed))
    with pytest.raises(serving.ClassListError, match="no-such-file.txt"):
        serving.class_labels(4, synsets_file=str(tmp_path / "no-such-file.txt"))


def test_cli_exports_a_mixed_bfloat16_model_of_the_other_variant_with_float32_io(tmp_path):
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = informative_alexnet(variant="single")
    finally:
        keras.mixed_precision.set_global_policy(policy)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(str(run_dir / "model.keras"))
    base = tmp_path / "serving"

    result = run_cli(
        "alexnet_tf.export", f"--model={run_dir}", f"--export_base={base}",
        "--model_name=alexnet_bf16", cwd=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert f"exported {base / '1'}" in result.stdout
    loaded = tf.saved_model.load(str(base / "1"))
    image = export.sample_images()[0][1]
    outputs = loaded.signatures["serving_default"](image_bytes=tf.constant([image]))
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["scores"].dtype == tf.float32
    preprocessed = data.preprocess_for_eval(tf.constant(image), IMAGE_SIZE)[tf.newaxis]
    # Both compute in bfloat16, the export in its traced graph's op order: they agree to
    # bfloat16's unit roundoff, 2**-8 (1.07e-3 apart measured on 2026-12-03, TF 2.21.0).
    np.testing.assert_allclose(
        outputs["probabilities"].numpy(), keras_probabilities(model, preprocessed), atol=2**-8
    )
    config = (base / "models.config").read_text()
    assert 'name: "alexnet_bf16"' in config


def test_cli_names_a_missing_model_file_in_one_line(tmp_path):
    missing = tmp_path / "nowhere" / "model.keras"
    result = run_cli(
        "alexnet_tf.export", f"--model={missing}", f"--export_base={tmp_path / 'out'}",
        cwd=str(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"export: --model={missing}: no such file"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_model_with_nan_weights_is_refused_in_one_line(tmp_path):
    """What a diverged run leaves: every answer would be NaN, so there is nothing to serve."""
    diverged = build_alexnet(num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, initialization="he")
    fc7 = diverged.get_layer("fc7")
    kernel, bias = fc7.get_weights()
    kernel[0, 0] = np.nan
    fc7.set_weights([kernel, bias])
    diverged.save(str(tmp_path / "model.keras"))
    result = run_cli("alexnet_tf.export", f"--model={tmp_path / 'model.keras'}",
                     f"--export_base={tmp_path / 'serving'}", cwd=str(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("export:")]
    assert "weights hold NaN or infinite values" in line and "fc7" in line
    assert not (tmp_path / "serving").exists() or not os.listdir(tmp_path / "serving")
