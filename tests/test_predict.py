"""python -m alexnet_tf.predict: top-5 ImageNet classes for image files, from the SavedModel."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import imagenet, predict
from alexnet_tf.export import exporter as export
from alexnet_tf.model import build_alexnet
from tests.test_export import informative_alexnet

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RANKED_LINE = re.compile(r"^  ([1-5])\. +(\d+\.\d\d)%  (n\d{8})  (.+)$")


def run_predict(*args: str, cwd: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "alexnet_tf.predict", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def export_base(tmp_path_factory) -> str:
    """Two versions of a 1000-class model, so the CLI has to pick the highest. Its answers
    differ from image to image (`informative_alexnet`), so an answer given for the wrong image
    shows."""
    model = informative_alexnet(num_classes=1000)
    base = str(tmp_path_factory.mktemp("serving") / "alexnet")
    export.export_model(model, base)
    export.export_model(model, base)
    return base


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    """A folder with a JPEG, a PNG and a file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    formats = (("photo.jpg", (90, 120), "JPEG"), ("logo.png", (64, 64), "PNG"))
    for name, size, image_format in formats:
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=image_format)
        (folder / name).write_bytes(buffer.getvalue())
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    return str(folder)


@pytest.fixture(scope="module")
def served_top5(export_base):
    """What the latest version's serving_default answers for an image file, in-process."""
    serve = tf.saved_model.load(os.path.join(export_base, "2")).signatures["serving_default"]

    def top5(image_path: str) -> tuple[list[str], np.ndarray]:
        with open(image_path, "rb") as handle:
            outputs = serve(image_bytes=tf.constant([handle.read()]))
        return outputs["synsets"][0].numpy().astype(str).tolist(), outputs["scores"][0].numpy()

    return top5


def test_prints_the_top5_synsets_with_names_and_probabilities(export_base, images, served_top5):
    result = run_predict(f"--model={export_base}", "photo.jpg", "logo.png", cwd=images)

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 12
    for block, image_name in zip((lines[:6], lines[6:]), ("photo.jpg", "logo.png")):
        assert block[0] == image_name
        matches = [RANKED_LINE.match(line) for line in block[1:]]
        assert all(matches), block
        assert [int(match.group(1)) for match in matches] == [1, 2, 3, 4, 5]
        for match in matches:
            assert match.group(4) == imagenet.class_name_for(match.group(3))
        percentages = [float(match.group(2)) for match in matches]
        assert percentages == sorted(percentages, reverse=True)
        synsets, scores = served_top5(os.path.join(images, image_name))
        assert [match.group(3) for match in matches] == synsets
        np.testing.assert_allclose(percentages, 100 * scores, atol=0.006)
    # The two images get different answers, so the blocks above could not be swapped.
    assert (served_top5(os.path.join(images, "photo.jpg"))[0]
            != served_top5(os.path.join(images, "logo.png"))[0])


def test_json_output_parses_and_reports_each_bad_file(export_base, images, served_top5):
    result = run_predict(
        f"--model={export_base}", "--json", "photo.jpg", "missing.jpg", "corrupt.jpg",
        cwd=images,
    )

    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["model"] == os.path.join(export_base, "2")  # the highest version
    good, missing, corrupt = document["results"]
    assert good["image"] == "photo.jpg"
    assert [entry["rank"] for entry in good["predictions"]] == [1, 2, 3, 4, 5]
    synsets, scores = served_top5(os.path.join(images, "photo.jpg"))
    assert [entry["synset"] for entry in good["predictions"]] == synsets
    np.testing.assert_allclose(
        [entry["probability"] for entry in good["predictions"]], scores, rtol=1e-6
    )
    for entry in good["predictions"]:
        assert entry["name"] == imagenet.class_name_for(entry["synset"])
        assert entry["class_id"] == imagenet.synsets().index(entry["synset"])
    assert missing == {
        "image": "missing.jpg",
        "error": "missing.jpg: cannot read the file: No such file or directory",
    }
    assert corrupt["image"] == "corrupt.jpg"
    assert corrupt["error"].startswith("corrupt.jpg: not a usable image: ")
    assert "jpeg" in corrupt["error"].lower()
    assert "missing.jpg" in result.stderr and "corrupt.jpg" in result.stderr


def test_text_output_still_answers_for_good_images_when_others_fail(export_base, images):
    result = run_predict(
        f"--model={export_base}/1", "corrupt.jpg", "photo.jpg", "missing.jpg", cwd=images
    )

    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "photo.jpg" and len(lines) == 6
    errors = [line for line in result.stderr.splitlines() if line.startswith("predict: ")]
    assert errors[0].startswith("predict: corrupt.jpg: not a usable image: ")
    assert errors[1] == "predict: missing.jpg: cannot read the file: No such file or directory"
    assert "Traceback" not in result.stderr


def test_without_images_it_is_a_usage_error(export_base, tmp_path):
    result = run_predict(f"--model={export_base}", cwd=str(tmp_path))
    assert result.returncode == 2
    assert "name at least one image file" in result.stderr


def test_model_folder_resolves_to_the_highest_numeric_version(tmp_path):
    base = tmp_path / "alexnet"
    for name in ("1", "9", "10", ".tmp-export-alexnet-123", "11-old"):
        (base / name).mkdir(parents=True)
        (base / name / "saved_model.pb").write_bytes(b"")
    (base / "12").mkdir()  # a version folder without a SavedModel is skipped
    assert predict.resolve_saved_model_dir(str(base)) == str(base / "10")
    assert predict.resolve_saved_model_dir(str(base / "9")) == str(base / "9")


def test_a_keras_file_is_refused_saying_how_to_export_it(tmp_path):
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"PK\x03\x04")
    with pytest.raises(predict.PredictError) as raised:
        predict.load_classifier(str(keras_file))
    message = str(raised.value)
    assert f"--model={keras_file} is a file; predict takes an exported SavedModel" in message
    assert f"python -m alexnet_tf.export --model={keras_file} --export_base=" in message


def test_a_folder_without_a_saved_model_is_named_in_the_error(tmp_path):
    with pytest.raises(predict.PredictError, match=f"--model={tmp_path}: neither a SavedModel"):
        predict.load_classifier(str(tmp_path))
    with pytest.raises(predict.PredictError, match="no such folder"):
        predict.load_classifier(str(tmp_path / "absent"))


def validation_name_of(synset: str, skip: int = 0) -> str:
    """An ILSVRC2012_val_<n>.JPEG name whose ground truth is `synset`."""
    indices = [i for i, s in enumerate(imagenet.validation_synsets(), start=1) if s == synset]
    return f"ILSVRC2012_val_{indices[skip]:08d}.JPEG"


def test_true_class_of_imagenet_validation_files_is_shown_and_counted(
        export_base, images, served_top5, tmp_path):
    synsets, _ = served_top5(os.path.join(images, "photo.jpg"))
    outside_top5 = next(s for s in imagenet.synsets() if s not in synsets)
    right, wrong = validation_name_of(synsets[0]), validation_name_of(outside_top5)
    with open(os.path.join(images, "photo.jpg"), "rb") as handle:
        photo = handle.read()
    for name in (right, wrong):
        (tmp_path / name).write_bytes(photo)

    result = run_predict(f"--model={export_base}", "--true_class=imagenet_val", right, wrong,
                         cwd=str(tmp_path))

    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{right}  true class: {synsets[0]}  {imagenet.class_name_for(synsets[0])}"
    assert lines[1].endswith("  <- true class") and RANKED_LINE.match(lines[1][:-15])
    assert not any(line.endswith("<- true class") for line in lines[2:6])
    assert lines[6] == (f"{wrong}  true class: {outside_top5}  "
                        f"{imagenet.class_name_for(outside_top5)}")
    assert not any(line.endswith("<- true class") for line in lines[7:12])
    assert lines[12:] == ["true class ranked 1st for 1 of 2 images, in the top 5 for 1 of 2"]


def test_true_class_from_the_folder_name_in_json_and_a_name_without_one_is_named(
        export_base, images, served_top5, tmp_path):
    synsets, _ = served_top5(os.path.join(images, "logo.png"))
    folder = tmp_path / "val" / synsets[2]
    folder.mkdir(parents=True)
    with open(os.path.join(images, "logo.png"), "rb") as handle:
        (folder / "logo.png").write_bytes(handle.read())
    (tmp_path / "photo.jpg").write_bytes(b"")

    result = run_predict(f"--model={export_base}", "--true_class=folder", "--json",
                         f"val/{synsets[2]}/logo.png", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    (entry,) = json.loads(result.stdout)["results"]
    assert entry["true_class"] == synsets[2] and entry["true_class_rank"] == 3

    result = run_predict(f"--model={export_base}", "--true_class=imagenet_val", "photo.jpg",
                         cwd=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "predict: photo.jpg: --true_class=imagenet_val needs an ILSVRC2012_val_<8 digits> "
        "file name")


@pytest.mark.slow
def test_the_export_command_a_keras_file_is_answered_with_runs_as_printed(images, tmp_path):
    """The refusal's advice, followed to the letter: export as printed, then predict on
    --model=EXPORT_BASE."""
    model = build_alexnet(num_classes=1000, image_size=67)
    model.save(str(tmp_path / "model.keras"))
    refused = run_predict("--model=model.keras", os.path.join(images, "photo.jpg"),
                          cwd=str(tmp_path))
    assert refused.returncode == 1
    advice = re.search(r"with: (python -m alexnet_tf\.export .*?), then pass (--model=\S+)",
                       refused.stderr)
    command = shlex.split(advice.group(1))
    assert command[0] == "python"
    exported = subprocess.run(
        [sys.executable, *command[1:]], cwd=str(tmp_path), capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"), timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    answered = run_predict(advice.group(2), os.path.join(images, "photo.jpg"),
                           cwd=str(tmp_path))
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert len(answered.stdout.strip().splitlines()) == 6
