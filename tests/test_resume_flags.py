"""What a resume does with each changed flag: refused mid-epoch unless known to be safe."""

import json
import os
import subprocess
import sys

import pytest

from alexnet_tf.train import resume_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trainer_flags() -> set[str]:
    """The trainer's flags, read in a process of their own (importing the trainer here would
    define --data_dir beside evaluate's in a test process that imported both)."""
    result = subprocess.run(
        [sys.executable, "-c", "import json; from alexnet_tf.train import trainer; "
         "print(json.dumps(trainer.TRAINER_FLAGS))"], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def outcome(flag, saved, now, mid_epoch):
    found = resume_flags.changes({flag: saved}, {flag: now}, mid_epoch=mid_epoch)
    assert [change.flag for change in found] == [flag]
    return found[0].outcome


@pytest.mark.parametrize("flag, saved, now", [
    ("cache_records", False, True), ("shuffle_buffer", 1000, 10), ("lighting", 0.1, 0.0),
    ("crop_region", "paper", "center"), ("resize_side", 256, 143), ("label_offset", 0, 1), ("use_synthetic_data", False, True),
    ("dropout", 0.5, 0.3), ("mixed_precision", "auto", "mixed_float16"), ("seed", 1, 2),
    ("steps_per_epoch", 10, 12), ("data_dir", "a", "b"),
    ("a_flag_added_later", 1, 2),  # no rule yet: treated as reaching the pipeline
])
def test_flags_that_may_change_what_an_epoch_reads_are_refused_mid_epoch_and_applied_at_its_end(
        flag, saved, now):
    assert outcome(flag, saved, now, mid_epoch=True) == resume_flags.REFUSED
    assert outcome(flag, saved, now, mid_epoch=False) == resume_flags.APPLIED


def test_the_refusal_names_the_flag_both_values_and_what_to_do():
    found = resume_flags.changes({"cache_records": False}, {"cache_records": True}, mid_epoch=True)
    message = resume_flags.refusal(found, "/runs/a")
    assert "--cache_records=True differs from its --cache_records=False" in message
    assert "read twice" in message and "epoch's end" in message and "--model_dir=/runs/a" in message


@pytest.mark.parametrize("flag", sorted(resume_flags.SAFE))
def test_the_safe_flags_apply_mid_epoch(flag):
    assert outcome(flag, 1, 2, mid_epoch=True) == resume_flags.APPLIED


def test_every_listed_flag_is_one_the_trainer_has(trainer_flags):
    # A renamed flag would silently lose its rule (and, if it was safe, become refused).
    listed = set(resume_flags.SAFE) | set(resume_flags._RULES) | set(resume_flags._REFUSED_MID_EPOCH)
    assert listed <= trainer_flags, sorted(listed - trainer_flags)


def test_nothing_that_reaches_the_records_or_the_network_is_listed_safe(trainer_flags):
    pipeline_and_network = {"data_dir", "use_synthetic_data", "label_offset", "steps_per_epoch",
                            "shuffle_buffer", "cache_records", "lighting", "crop_region", "resize_side",
                            "seed",
                            "variant", "num_classes", "image_size", "dropout", "initialization",
                            "lrn", "init_from", "train_layers", "batch_size", "mixed_precision"}
    assert not pipeline_and_network & set(resume_flags.SAFE)
    # ...and every trainer flag is either one of those, or has a rule, or is listed safe.
    decided = pipeline_and_network | set(resume_flags.SAFE) | set(resume_flags._RULES)
    assert trainer_flags <= decided, sorted(trainer_flags - decided)
