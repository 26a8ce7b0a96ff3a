"""Your class names, from the folders to the served answer: convert -> train -> export -> predict.

The trainer takes --num_classes from the records' labels.txt and leaves labels.txt beside
model.keras; export finds it there and the SavedModel's `synsets` output, `predict` and
`evaluate --per_class` name your classes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import labels
from alexnet_tf.convert import main as conversion
from tests.record_fixtures import class_colour, synthetic_jpeg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("zebra 2", "my cats", "Äpfel")


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[str, str]:
    """(raw folder, records folder) of three solid-colour classes with non-ASCII names."""
    root = tmp_path_factory.mktemp("own_classes")
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        os.makedirs(root / "raw" / name)
        for number in range(10):
            jpeg = synthetic_jpeg(rng, class_colour(index, len(CLASSES)), 80, 96)
            (root / "raw" / name / f"{number}.jpg").write_bytes(jpeg)
    conversion.convert(str(root / "raw"), str(root / "records"), train_shards=2, validation_shards=1,
                       num_workers=1, validation_fraction=0.3)
    return str(root / "raw"), str(root / "records")


def smoke_flags_without_num_classes(tmp_path) -> str:
    """configs/smoke.cfg less its --num_classes, so the records' labels.txt decides."""
    with open(os.path.join(REPO_ROOT, "configs", "smoke.cfg"), encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("--num_classes")]
    path = tmp_path / "smoke-own-classes.cfg"
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


@pytest.mark.slow
def test_class_names_travel_from_the_folders_to_the_served_answer(converted, tmp_path):
    raw, records_dir = converted
    class_names = sorted(CLASSES)
    model_dir = str(tmp_path / "model")
    trained = run_module("alexnet_tf.train", f"--flagfile={smoke_flags_without_num_classes(tmp_path)}",
                         f"--data_dir={records_dir}", f"--model_dir={model_dir}", "--epochs=1",
                         "--batch_size=4")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert labels.read_labels(os.path.join(model_dir, "labels.txt")) == class_names
    with open(os.path.join(model_dir, "summary.json"), encoding="utf-8") as handle:
        assert json.load(handle)["flags"]["num_classes"] == 3

    base = str(tmp_path / "serving")
    exported = run_module("alexnet_tf.export", f"--model={model_dir}/model.keras", f"--export_base={base}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    serve = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    image_path = os.path.join(raw, "my cats", "0.jpg")
    with open(image_path, "rb") as handle:
        outputs = serve(image_bytes=tf.constant([handle.read()]))
    served = [name.decode("utf-8") for name in outputs["synsets"][0].numpy()]
    assert sorted(served) == class_names
    assert served == [class_names[i] for i in outputs["classes"][0].numpy()]

    predicted = run_module("alexnet_tf.predict", f"--model={base}", image_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    ranked = [re.match(r"^  ([1-3])\. +\d+\.\d\d%  (.+)$", line) for line in predicted.stdout.splitlines()[1:]]
    assert [match.group(2) for match in ranked] == served, predicted.stdout

    evaluated = run_module("alexnet_tf.evaluate", f"--data_dir={records_dir}",
                           f"--model={model_dir}/model.keras", "--per_class")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = [line.split(None, 3) for line in evaluated.stdout.splitlines() if line[:7].strip().isdigit()]
    assert [(int(row[0]), row[3]) for row in rows] == list(enumerate(class_names))
    assert all(0.0 <= float(row[2]) <= 1.0 and int(row[1]) > 0 for row in rows)


@pytest.mark.parametrize("setup", ["a contradicting --num_classes", "a model_dir of other classes"])
def test_a_class_count_or_list_that_contradicts_the_records_is_refused(converted, tmp_path, setup):
    _, records_dir = converted
    model_dir = tmp_path / "model"
    flags = []
    if setup == "a contradicting --num_classes":
        flags.append("--num_classes=5")
    else:
        model_dir.mkdir()
        labels.write_labels(str(model_dir / "labels.txt"), ["cats", "dogs", "hamsters"])
    result = run_module("alexnet_tf.train", f"--flagfile={smoke_flags_without_num_classes(tmp_path)}",
                        f"--data_dir={records_dir}", f"--model_dir={model_dir}", *flags)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "labels.txt" in errors[0], result.stderr[-2000:]
    assert ("--num_classes=5" in errors[0]) == (setup == "a contradicting --num_classes")
    assert not (model_dir / "model.keras").exists()
