"""What a user reads from the trainer and the exporter (issue 21): records without a validation
split, refused runs that leave the folder as they found it, plain progress in a log file, TF's
routine lines silenced, and a summary line at the end.

Output goes to files, as in a log or CI, and TF_CPP_MIN_LOG_LEVEL is unset, as in a user's shell.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from alexnet_tf import imagenet, labels
from tests.record_fixtures import write_records
from tests.test_train import REPO_ROOT, SMOKE_CONFIG, read_json, trainer_command

NUM_CLASSES = 4
# configs/paper.cfg's 10 steps per call over 3-step epochs.
FLAGS = ("--steps_per_epoch=3", "--steps_per_execution=10", "--epochs=2", "--progress=bar")
STARTUP_LINES = ("All log messages before absl::InitializeLog()", "cudart_stub.cc")


def user_environment() -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return dict(environment, PYTHONPATH=REPO_ROOT)


def run_logged(command: list[str], tmp_path, name: str) -> tuple[int, str, str]:
    """Runs `command` with stdout and stderr going to files; (exit code, stdout, stderr)."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        code = subprocess.run(command, cwd=REPO_ROOT, env=user_environment(), stdout=stdout,
                              stderr=stderr, timeout=240).returncode
    return code, out.read_text(), err.read_text()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def train_only_records(tmp_path_factory) -> str:
    """What the converter writes from class folders without --validation_fraction."""
    directory = str(tmp_path_factory.mktemp("train_only"))
    write_records(directory, split="train", num_classes=NUM_CLASSES, images_per_class=12,
                  num_shards=2, label_offset=0)
    names = imagenet.synsets()[:NUM_CLASSES]
    with open(os.path.join(directory, labels.LABELS_FILENAME), "w") as handle:
        handle.write(labels.format_labels(names))
    manifest = {"options": {"label_offset": 0}, "num_classes": NUM_CLASSES,
                "labels_file": labels.LABELS_FILENAME,
                "splits": {"train": {"images": NUM_CLASSES * 12,
                                     "classes": {name: 12 for name in names}}}}
    with open(os.path.join(directory, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return directory


def listing(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, folders, files in os.walk(folder) for name in folders + files)


def test_without_a_validation_split_the_refusal_names_the_fix_and_leaves_no_folder(
        train_only_records, tmp_path):
    model_dir = tmp_path / "fresh" / "model"
    code, _, stderr = run_logged(trainer_command(train_only_records, str(model_dir)),
                                 tmp_path, "refused")
    assert code == 2, stderr[-3000:]
    [error] = error_lines(stderr)
    assert "no validation-*-of-* shards" in error
    assert "--validation_fraction=0.1" in error and "--novalidation" in error, error
    assert not (tmp_path / "fresh").exists(), listing(tmp_path / "fresh")


def test_a_refused_run_leaves_an_existing_model_dir_as_it_found_it(train_only_records,
                                                                   tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("mine")
    before = listing(model_dir)
    code, _, stderr = run_logged(trainer_command(train_only_records, str(model_dir)),
                                 tmp_path, "refused")
    assert code == 2 and len(error_lines(stderr)) == 1, stderr[-3000:]
    assert listing(model_dir) == before  # no .lock, no labels.txt
    assert (model_dir / "notes.txt").read_text() == "mine"


def test_a_run_refused_for_its_classes_leaves_no_folder(train_only_records, tmp_path):
    model_dir = tmp_path / "model"
    code, _, stderr = run_logged(
        trainer_command(train_only_records, str(model_dir), "--num_classes=7"), tmp_path,
        "refused")
    assert code == 2, stderr[-3000:]
    [error] = error_lines(stderr)
    assert "--num_classes" in error
    assert not model_dir.exists(), listing(model_dir)


def test_novalidation_refuses_the_plateau_schedule_in_one_line(train_only_records, tmp_path):
    model_dir = tmp_path / "model"
    code, _, stderr = run_logged(
        trainer_command(train_only_records, str(model_dir), "--novalidation"), tmp_path, "run")
    assert code == 2, stderr[-3000:]
    [error] = error_lines(stderr)
    assert "--lr_schedule=plateau" in error and "--novalidation" in error, error
    assert not model_dir.exists()


@pytest.fixture(scope="module")
def run_without_validation(train_only_records, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("no_validation")
    model_dir = str(tmp_path / "model")
    result = run_logged(trainer_command(train_only_records, model_dir, *FLAGS, "--novalidation",
                                        "--lr_schedule=step"), tmp_path, "train")
    return model_dir, result


def test_novalidation_trains_and_says_what_it_gives_up(run_without_validation):
    model_dir, (code, stdout, stderr) = run_without_validation
    assert code == 0, stderr[-3000:]
    assert re.search(r"--novalidation: .*plateau.*best.*validation", stderr), stderr[-3000:]
    history = read_json(model_dir, "history.json")
    assert len(history) == 2
    assert not [key for key in history[-1] if key.startswith("val_")]
    assert read_json(model_dir, "summary.json")["validation"] is None


def assert_quiet(stdout: str, stderr: str) -> None:
    """No terminal codes in a file, no TF lines a user cannot act on, start-up lines once."""
    for text in (stdout, stderr):
        assert "\x1b[" not in text and "\b" not in text, text[-2000:]
    assert "Sharding callback duration" not in stderr
    for line in STARTUP_LINES:
        assert stderr.count(line) <= 1, stderr[:3000]


def test_progress_in_a_log_file_is_plain_lines_counting_real_steps(run_without_validation):
    _, (code, stdout, stderr) = run_without_validation
    assert code == 0, stderr[-3000:]
    assert_quiet(stdout, stderr)
    assert "10/3" not in stdout
    assert len(re.findall(r"^3/3 ", stdout, re.MULTILINE)) == 2, stdout


def test_the_run_ends_with_a_summary_line_on_stdout(run_without_validation):
    model_dir, (code, stdout, stderr) = run_without_validation
    assert code == 0, stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert re.match(r"Trained 2 epochs \(6 steps\) in [\dhms.]+, [^;]*images/s; "
                    r"no validation \(--novalidation\); model: ", last), last
    assert last.endswith(os.path.join(model_dir, "model.keras")), last


def test_export_prints_no_routine_tensorflow_lines(run_without_validation, tmp_path):
    model_dir, (code, _, stderr) = run_without_validation
    assert code == 0, stderr[-3000:]
    code, stdout, stderr = run_logged(
        [sys.executable, "-m", "alexnet_tf.export",
         f"--model={os.path.join(model_dir, 'model.keras')}", f"--export_base={tmp_path}/serving"],
        tmp_path, "export")
    assert code == 0, stderr[-3000:]
    assert_quiet(stdout, stderr)
    assert "unsupported characters which will be renamed" not in stderr
    assert (stdout + stderr).count("Assets written") <= 1
    assert "exported " in stdout


def test_taking_back_removes_only_the_runs_own_entries_and_empty_folders(tmp_path):
    """Another program's file, written while the run was being refused, stays."""
    from alexnet_tf.train import folder_changes

    fresh = tmp_path / "new" / "model"
    changes = folder_changes.FolderChanges(str(fresh), [".lock"])
    fresh.mkdir(parents=True)
    (fresh / ".lock").write_text("")
    (tmp_path / "new" / "theirs.txt").write_text("")
    changes.take_back()
    assert listing(tmp_path / "new") == ["theirs.txt"]

    existing = tmp_path / "existing"
    existing.mkdir()
    changes = folder_changes.FolderChanges(str(existing), [".lock", "labels.txt"])
    for name in (".lock", "labels.txt", "theirs.txt"):
        (existing / name).write_text("")
    changes.take_back()
    assert listing(existing) == ["theirs.txt"]
