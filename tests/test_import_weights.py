"""torchvision weights -> model.keras -> SavedModel, and fine-tuning the imported model.

torchvision cannot be installed here, so the network is its module layout written in plain
torch (tests/torchvision_layout.py) with random weights, saved with torch.save(state_dict()),
exactly what torchvision's published .pth files hold.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_tf import imagenet, import_weights, labels  # noqa: E402
from alexnet_tf.model import model_info
from alexnet_tf.train import plotting
from tests import torchvision_layout  # noqa: E402
from tests.readme_commands import (run_command, section_commands, user_folder,  # noqa: E402
                                   write_photos)
from tests.record_fixtures import class_colour, write_records  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE_SIZE = 67
FINETUNE_CLASSES = 4


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)


def calibration_images() -> torch.Tensor:
    """Images like the fine-tuning corpus's, at its size: each class's colour plus noise."""
    rng = np.random.default_rng(5)
    colours = [class_colour(c, FINETUNE_CLASSES) for c in range(FINETUNE_CLASSES)] * 4
    pixels = np.clip(np.asarray(colours, np.float32)[:, None, None, :]
                     + rng.normal(0, 20, (len(colours), FINETUNE_SIZE, FINETUNE_SIZE, 3)), 0, 255)
    return torchvision_layout.normalise(pixels)


@pytest.fixture(scope="module")
def torch_network():
    return torchvision_layout.random_alexnet(seed=0, calibrate_on=calibration_images())


@pytest.fixture(scope="module")
def weights_files(torch_network, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("weights")
    state = torch_network.state_dict()
    pth = str(folder / "alexnet-owt-test.pth")
    torch.save(state, pth)
    safetensors = str(folder / "alexnet-owt-test.safetensors")
    safetensors_numpy.save_file({k: v.numpy() for k, v in state.items()}, safetensors)
    return {"pth": pth, "safetensors": safetensors, "state": state}


@pytest.fixture(scope="module")
def imported(weights_files, tmp_path_factory) -> dict:
    """`python -m alexnet_tf.import_weights` on the .pth, as a user runs it."""
    folder = str(tmp_path_factory.mktemp("imported"))
    output = os.path.join(folder, "model.keras")
    result = run_cli("alexnet_tf.import_weights", "--format=torchvision",
                     f"--weights={weights_files['pth']}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"dir": folder, "model": output, "stdout": result.stdout}


@pytest.fixture(scope="module")
def imported_model(imported) -> keras.Model:
    return keras.saving.load_model(imported["model"], compile=False)


def test_import_writes_the_model_its_labels_record_and_filters(imported):
    folder = imported["dir"]
    for name in ("model.keras", "labels.txt", "model_info.json", "conv1_filters.png"):
        assert name in imported["stdout"] and os.path.isfile(os.path.join(folder, name)), name
    assert labels.read_labels(os.path.join(folder, "labels.txt")) == labels.imagenet_labels()
    info = model_info.read_info(imported["model"])
    assert info["variant"] == "single" and info["image_size"] == 224
    assert info["num_classes"] == 1000 and info["parameters"] == 61100840
    assert info["preprocessing"] == {"name": "torchvision", "resize_shorter_side": 256,
                                     "crop_size": 224}
    with Image.open(os.path.join(folder, "conv1_filters.png")) as picture:
        _, height, width = plotting.mosaic_geometry(64, towers=1)
        assert picture.size == (width, height)


def test_imported_model_gives_torchs_logits_on_the_same_pixels(torch_network, imported_model):
    rng = np.random.default_rng(1)
    pixels = rng.uniform(0, 255, (3, 224, 224, 3)).astype(np.float32)
    # Dark and bright borders: conv1's zero padding must be zero in torchvision's space.
    pixels[0, :8], pixels[0, :, -8:] = 0.0, 255.0
    pixels[1] = np.clip(pixels[1] * 0.2, 0, 255)
    with torch.no_grad():
        expected = torch_network(torchvision_layout.normalise(pixels)).numpy()
    actual = imported_model(pixels - imagenet.RGB_MEAN, training=False).numpy()
    relative = np.abs(actual - expected).max() / np.abs(expected).max()
    assert relative < 1e-5, relative  # measured about 1e-6; 1e-4 is what the issue asks
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))


def test_the_python_api_at_the_smallest_input_matches_torch_too(torch_network, weights_files):
    # At 63x63 the padded border is a large share of conv1's input and pool5 is 1x1, which
    # torchvision's adaptive pool repeats to 6x6.
    network = import_weights.load_torchvision(weights_files["safetensors"], image_size=63)
    pixels = np.random.default_rng(2).uniform(0, 255, (4, 63, 63, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch_network(torchvision_layout.normalise(pixels)).numpy()
    actual = network(pixels - imagenet.RGB_MEAN, training=False).numpy()
    relative = np.abs(actual - expected).max() / np.abs(expected).max()
    assert relative < 1e-5, relative  # measured about 1e-6; 1e-4 is what the issue asks


def test_safetensors_gives_the_weights_of_the_pth(weights_files):
    from_pth = import_weights.read_state_dict(weights_files["pth"])
    from_safetensors = import_weights.read_state_dict(weights_files["safetensors"])
    assert from_pth.keys() == from_safetensors.keys() == import_weights.TORCHVISION_SHAPES.keys()
    for key in from_pth:
        np.testing.assert_array_equal(from_pth[key], from_safetensors[key])
        np.testing.assert_array_equal(from_pth[key], weights_files["state"][key].numpy())


class _RunsCode:
    """A pickle of this calls os.system when it is unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, writer):
    marker = str(tmp_path / "code-ran")
    state = {"features.0.weight": _RunsCode(marker)}  # refused before any shape check
    path = str(tmp_path / "evil.pth")
    if writer == "torch.save":
        torch.save(state, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(state, handle, protocol=2)
    with pytest.raises(import_weights.WeightsError, match="refused") as caught:
        import_weights.read_state_dict(path)
    assert path in str(caught.value) and "\n" not in str(caught.value)
    assert not os.path.exists(marker), "unpickling ran the file's code"


def test_wrong_keys_and_shapes_are_all_named(weights_files, tmp_path):
    state = {k: v.numpy() for k, v in weights_files["state"].items()}
    state["features.3.weight"] = state["features.3.weight"][:, :, :3, :3].copy()
    del state["classifier.4.bias"]
    state["features.1.weight"] = np.zeros(3, np.float32)
    path = str(tmp_path / "wrong.safetensors")
    safetensors_numpy.save_file(state, path)
    result = run_cli("alexnet_tf.import_weights", f"--weights={path}",
                     f"--output={tmp_path / 'out' / 'model.keras'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("import_weights: --weights=")
    for named in (path, "features.3.weight has shape [192, 64, 3, 3]", "[192, 64, 5, 5]",
                  "missing classifier.4.bias", "unexpected features.1.weight"):
        assert named in message, (named, message)
    assert not os.path.exists(tmp_path / "out" / "model.keras")


def test_torchvision_class_order_is_the_sorted_synsets_of_tfds_labels():
    # torchvision's ImageNet class i is the i-th training folder (synset) in sorted order;
    # its published weights list the names in that order (torchvision/models/_meta.py).
    synsets = labels.imagenet_labels()
    assert synsets == sorted(synsets) == labels.sorted_class_names(synsets)
    names = imagenet.class_names()
    torchvision_names = {0: "tench", 1: "goldfish", 207: "golden retriever", 281: "tabby",
                         409: "analog clock", 999: "toilet tissue"}
    for index, name in torchvision_names.items():
        assert names[index].lower().startswith(name), (index, names[index])
    assert synsets[0] == "n01440764" and synsets[999] == "n15075141"


def real_looking_jpegs(count: int) -> list[bytes]:
    """Photographs they are not, but they have what decides resizing: smooth shading, edges,
    texture, odd sizes both ways of 256, portrait and landscape, JPEG noise."""
    rng = np.random.default_rng(3)
    images = []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(150, 520, size=2))
        rows, columns = np.mgrid[0:height, 0:width]
        waves = np.stack([np.sin(columns / rng.uniform(4, 40) + rng.uniform(0, 6)),
                          np.cos(rows / rng.uniform(4, 40)),
                          np.sin((rows + columns) / rng.uniform(4, 40))], axis=-1)
        pixels = 128 + 100 * waves * rng.uniform(0.3, 1.0, 3)
        for _ in range(5):
            centre_row, centre_column = rng.integers(0, height), rng.integers(0, width)
            radius = rng.integers(10, 80)
            disc = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 < radius ** 2
            pixels[disc] = rng.uniform(0, 255, 3)
        pixels = np.clip(pixels + rng.normal(0, 10, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
        images.append(buffer.getvalue())
    return images


@pytest.mark.slow
def test_saved_model_answers_what_torchvisions_eval_transform_and_network_answer(
        torch_network, imported, tmp_path):
    export_base = str(tmp_path / "serving")
    result = run_cli("alexnet_tf.export", f"--model={imported['model']}",
                     f"--export_base={export_base}")
    assert result.returncode == 0, result.stderr[-3000:]
    serve = tf.saved_model.load(os.path.join(export_base, "1")).signatures["serving_default"]
    images = real_looking_jpegs(40)
    agree = 0
    for image_bytes in images:
        with torch.no_grad():
            expected = torch_network(torchvision_layout.torchvision_eval_transform(image_bytes))
        answer = serve(image_bytes=tf.constant([image_bytes]))
        agree += int(answer["classes"].numpy()[0, 0] == int(expected.argmax()))
        assert answer["synsets"].numpy()[0, 0].decode() in labels.imagenet_labels()
    # Measured: 39 of 40 with torchvision's preprocessing (JPEG decoding differs a little);
    # 35 of 40 when the same model is served with the "paper" preprocessing.
    assert agree >= 38, f"top-1 equal to torch on {agree} of {len(images)} images"


@pytest.fixture(scope="module")
def finetune_records(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("finetune-records"))
    write_records(folder, split="train", num_classes=FINETUNE_CLASSES, images_per_class=16)
    write_records(folder, split="validation", num_classes=FINETUNE_CLASSES, images_per_class=8,
                  num_shards=1, seed=1)
    return folder


@pytest.mark.slow
def test_fine_tuning_the_imported_model_with_a_new_fc8_learns_and_frozen_layers_stay(
        imported, imported_model, finetune_records, tmp_path):
    run_dir = str(tmp_path / "run")
    result = run_cli(
        "alexnet_tf.train", f"--flagfile={os.path.join(REPO_ROOT, 'configs', 'smoke.cfg')}",
        f"--data_dir={finetune_records}", f"--model_dir={run_dir}", "--variant=single",
        f"--init_from={imported['model']}", "--train_layers=fc8", "--learning_rate=0.001",
        f"--num_classes={FINETUNE_CLASSES}", "--epochs=6", "--seed=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"fc8 newly initialised: {imported['model']} has 1000 classes, --num_classes=4" \
        in result.stderr
    with open(os.path.join(run_dir, "history.json")) as handle:
        history = json.load(handle)
    # Measured (README's table): loss 2.19 -> 1.02, validation top-1 0.25 -> 1.0. On another
    # data order (2026-12-01) the loss went 1.93 ... 0.97 and spiked to 2.42 in epoch 6: judge
    # the last three epochs, not one.
    losses = [record["loss"] for record in history]
    assert min(losses[-3:]) < 0.7 * losses[0], losses
    assert max(record["val_top1_accuracy"] for record in history[-3:]) >= 0.75, history

    tuned = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"):
        for before, after in zip(imported_model.get_layer(name).get_weights(),
                                 tuned.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after, err_msg=name)
    assert tuned.get_layer("input_normalization").get_config()["offset"] == \
        imported_model.get_layer("input_normalization").get_config()["offset"]
    info = model_info.read_info(run_dir)
    assert info["preprocessing"]["name"] == "paper" and info["image_size"] == FINETUNE_SIZE
    with Image.open(os.path.join(run_dir, "conv1_filters.png")) as picture:
        _, height, width = plotting.mosaic_geometry(64, towers=1)
        assert picture.size == (width, height)


def printed_command(stdout: str, name: str) -> list[str]:
    """The command import_weights printed after `name:`, as an argument list."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"{name}:"))
    return shlex.split(line[len(name) + 1:])


@pytest.mark.slow
def test_readmes_pretrained_commands_and_the_printed_next_steps_run_as_shown(
        weights_files, tmp_path):
    """README's import, export and fine-tuning lines, in a user's folder holding the weights
    and photos/ converted as "Your own images" shows: the fine-tuning line is what the import
    prints, and it learns the folder's 3 classes (no --num_classes to get wrong)."""
    folder = user_folder(str(tmp_path / "clone"))
    classes = ("cats", "dogs", "my hamsters")
    write_photos(os.path.join(folder, "photos"), classes, per_class=24)
    shutil.copy(weights_files["pth"], os.path.join(folder, "alexnet-owt-7be5be79.pth"))
    convert = section_commands("Your own images")[0]
    assert convert[1] == "tools/build_tfrecords.py"
    converted = run_command(convert, folder)
    assert converted.returncode == 0, converted.stderr[-3000:]

    import_command, export_command, train_command = section_commands(
        "Start from pretrained weights")
    imported = run_command(import_command, folder)
    assert imported.returncode == 0, imported.stderr[-3000:]
    printed_export = printed_command(imported.stdout, "export")
    printed_train = printed_command(imported.stdout, "fine-tune")
    assert [arg.replace("SERVING", "serving-imagenet") for arg in printed_export] == \
        export_command
    assert [arg.replace("RECORDS", "records").replace("RUN", "finetuned")
            for arg in printed_train] == train_command
    assert not any(arg.startswith("--num_classes") for arg in train_command)

    tuned = run_command(train_command, folder, f"--image_size={FINETUNE_SIZE}", "--epochs=3")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "fc8 newly initialised: pretrained/model.keras has 1000 classes, --num_classes=3" \
        in tuned.stderr
    assert "training photos for 3 classes" not in tuned.stderr  # no from-scratch warning
    with open(os.path.join(folder, "finetuned", "history.json")) as handle:
        losses = [record["loss"] for record in json.load(handle)]
    # The printed --learning_rate=0.001 keeps the loss near ln 3 = 1.10 (measured 1.2-1.6 over 3
    # epochs on these 72 generated photos, not always falling: too few steps to judge learning,
    # which the test above does); the default 0.01 diverged: 25.3, 21.8, 46.4 (README's table).
    assert len(losses) == 3 and all(np.isfinite(losses)) and max(losses) < 5, losses

    exported = run_command(export_command, folder)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert os.path.isdir(os.path.join(folder, "serving-imagenet", "1"))
