"""`python -m alexnet_tf.evaluate` misused: damaged shards, shards beside the manifest's, records
from other converters, models it cannot score. Each must end in one line naming the file or flag.

`main` runs in this process (its flags parsed as the command line would) so the dozen cases
cost seconds: an exception escaping `main` fails the test as a traceback would fail the user.
"""

from __future__ import annotations

import logging
import os
import shutil

import keras
import pytest
from absl import flags
from absl.testing import flagsaver

from alexnet_tf import imagenet
from alexnet_tf.evaluate import evaluator as evaluate
from alexnet_tf.model import alexnet as model
from tests.shard_fixtures import damage_shard, write_manifest
from tests.record_fixtures import write_records

NUM_CLASSES = 4
FLAGS = flags.FLAGS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[str, str]:
    """(records folder with a manifest, an untrained 4-class 67x67 model.keras)."""
    folder = str(tmp_path_factory.mktemp("records"))
    write_records(folder, split="train", num_classes=NUM_CLASSES, images_per_class=4, num_shards=2,
                  min_side=70, max_side=90)
    write_records(folder, split="validation", num_classes=NUM_CLASSES, images_per_class=3, num_shards=2,
                  min_side=70, max_side=90, seed=1)
    write_manifest(folder, NUM_CLASSES)
    model_path = os.path.join(str(tmp_path_factory.mktemp("model")), "model.keras")
    model.build_alexnet(num_classes=NUM_CLASSES, image_size=67).save(model_path)
    return folder, model_path


@pytest.fixture
def records_copy(corpus, tmp_path) -> str:
    copy = str(tmp_path / "records")
    shutil.copytree(corpus[0], copy)
    return copy


def run_evaluate(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m alexnet_tf.evaluate ARGS`, in this process."""
    with flagsaver.flagsaver():
        # Sets evaluate's flags one by one rather than parsing a command line: other test
        # modules in this process define CLIs with required flags of their own (the
        # converter's --output_dir), whose validators a full parse would run.
        FLAGS.unparse_flags()
        FLAGS.mark_as_parsed()
        FLAGS["verbosity"].parse("0")  # absl's INFO, as a parsed command line sets it
        for argument in args:
            name, _, value = argument[2:].partition("=")
            FLAGS[name].parse(value)
        try:
            evaluate.main(["evaluate"])
            code = 0
        except SystemExit as exited:
            code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


@pytest.mark.parametrize("kind, problem", [
    ("truncated", "bytes where manifest.json records"),  # found from its size, reading nothing
    ("bad_jpeg", "record 2 holds a JPEG that does not decode"),
])
def test_a_damaged_validation_shard_is_named_with_what_checks_the_rest(corpus, records_copy, capsys,
                                                                       kind, problem):
    shard = os.path.join(records_copy, "validation-00001-of-00002")
    damage_shard(shard, kind)
    if kind == "bad_jpeg":  # a shard of the recorded size: only reading it again finds the record
        write_manifest(records_copy, NUM_CLASSES)
    code, out, err = run_evaluate(capsys, f"--data_dir={records_copy}", f"--model={corpus[1]}")
    assert code == 1
    assert_one_error_line(err, f"{shard} is damaged: ", problem)
    assert (f"python -m alexnet_tf.convert --output_dir={records_copy} --verify checks every "
            "shard" in err)
    assert "top-1" not in out


def test_only_the_manifests_shards_are_scored_and_the_others_named(corpus, records_copy, capsys, caplog):
    shutil.copy(os.path.join(records_copy, "train-00000-of-00002"),
                os.path.join(records_copy, "train-00000-of-00003"))
    with caplog.at_level(logging.WARNING):
        code, out, _ = run_evaluate(capsys, f"--data_dir={records_copy}", f"--model={corpus[1]}",
                                    "--split=train")
    assert code == 0
    assert out.startswith(f"{NUM_CLASSES * 4} train images")  # not the 24 a glob reads
    assert "left out 1 other train-*-of-* files beside them: train-00000-of-00003" in caplog.text


def test_the_label_offset_of_records_without_a_manifest_is_read_from_them(tmp_path, corpus, capsys, caplog):
    folder = str(tmp_path / "tpu-style")
    write_records(folder, split="validation", num_classes=NUM_CLASSES, images_per_class=2, num_shards=1,
                  min_side=70, max_side=90, label_offset=1)  # labels 1..N, as imagenet_to_gcs.py writes
    code, _, err = run_evaluate(capsys, f"--data_dir={folder}", f"--model={corpus[1]}", "--label_offset=0")
    assert code == 2
    assert_one_error_line(err, "--label_offset=0 disagrees with the records", "--label_offset=1")
    with caplog.at_level(logging.INFO):
        code, out, _ = run_evaluate(capsys, f"--data_dir={folder}", f"--model={corpus[1]}")
    assert code == 0 and out.startswith(f"{NUM_CLASSES * 2} validation images")
    assert "label offset 1, found from the records" in caplog.text


def test_a_model_of_another_input_size_is_refused(corpus, capsys):
    code, _, err = run_evaluate(capsys, f"--data_dir={corpus[0]}", f"--model={corpus[1]}", "--image_size=80")
    assert code == 2
    assert_one_error_line(err, "--image_size=80 differs from the input size", "(67x67)")


def test_a_model_that_is_not_an_alexnet_is_refused(corpus, tmp_path, capsys):
    path = str(tmp_path / "dense.keras")
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save(path)
    code, _, err = run_evaluate(capsys, f"--data_dir={corpus[0]}", f"--model={path}")
    assert code == 2
    assert_one_error_line(err, f"--model={path} is not an AlexNet image classifier")


def test_a_truncated_model_file_is_called_truncated(corpus, tmp_path, capsys):
    path = str(tmp_path / "model.keras")
    with open(corpus[1], "rb") as source, open(path, "wb") as target:
        data = source.read()
        target.write(data[: len(data) // 2])
    code, _, err = run_evaluate(capsys, f"--data_dir={corpus[0]}", f"--model={path}")
    assert code == 2
    assert_one_error_line(err, f"--model={path} is damaged or truncated")
    assert "File not found" not in err


def test_a_model_with_fewer_classes_than_the_records_is_refused(corpus, records_copy, capsys):
    write_manifest(records_copy, NUM_CLASSES, extra_classes={imagenet.synsets()[999]: 1})
    code, out, err = run_evaluate(capsys, f"--data_dir={records_copy}", f"--model={corpus[1]}")
    assert code == 2
    assert_one_error_line(err, "has 4 classes", "labels up to 999")
    assert "top-1" not in out


def test_output_json_into_a_missing_folder_is_refused_before_scoring(corpus, tmp_path, capsys):
    target = str(tmp_path / "absent" / "results.json")
    code, out, err = run_evaluate(capsys, f"--data_dir={corpus[0]}", f"--model={corpus[1]}",
                                  f"--output_json={target}")
    assert code == 2
    assert_one_error_line(err, f"--output_json={target}", "does not exist")
    assert out == ""
