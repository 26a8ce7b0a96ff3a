"""A class count or list that contradicts the records' labels.txt is refused.

(The names' way from the folders to the served answer, convert -> train -> export -> predict
-> evaluate, is tests/test_readme_commands.py's, on README's own commands.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

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
