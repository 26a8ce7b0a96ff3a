"""The converter on your own class folders (--layout=folders): names, order, splits, resume."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from alexnet_tf import labels
from alexnet_tf.convert import main as conversion
from alexnet_tf.convert import manifest as manifest_module
from alexnet_tf.data import records
from tests import corpus
from tests.test_convert import read_records, run_tool, shard_digests


def convert(raw: str, out: str, **options) -> dict:
    options = {"train_shards": 2, "validation_shards": 1, "num_workers": 1, **options}
    return conversion.convert(raw, out, **options)


def written_records(out: str) -> dict[str, list[dict]]:
    return {split: read_records(out, split) for split in records.SPLITS}


def check_labels_and_names(out: str, class_names: list[str]) -> None:
    """Each record's label is its class's line in labels.txt; synset and text are the name."""
    assert labels.read_labels(os.path.join(out, "labels.txt")) == class_names
    for rows in written_records(out).values():
        for row in rows:
            name = row[records.SYNSET].decode("utf-8")
            assert row[records.TEXT].decode("utf-8") == name
            assert row[records.LABEL] == class_names.index(name)


@pytest.fixture(scope="module")
def top_level(tmp_path_factory):
    """RAW/<class>/* split by --validation_fraction."""
    root = tmp_path_factory.mktemp("folders")
    expected = corpus.write_class_folders(str(root / "raw"))
    result = convert(str(root / "raw"), str(root / "out"), validation_fraction=0.3)
    return root, expected, result


def test_class_folders_with_any_names_and_extensions_are_converted(top_level):
    root, expected, result = top_level
    out = str(root / "out")
    assert result["layout"] == "folders"
    class_names = sorted(corpus.FOLDER_CLASSES)  # code points: "10" < "Zebra" < "chiens été" < ...
    assert class_names == ["10", "Zebra", "chiens été", "my cats", "Äpfel"]
    check_labels_and_names(out, class_names)

    # Every file is in exactly one record, or skipped with its reason; clutter is ignored.
    rows = [row for split_rows in written_records(out).values() for row in split_rows]
    written = {(row[records.SYNSET].decode(), row[records.FILENAME].decode()) for row in rows}
    assert len(written) == len(rows)
    skipped = {os.path.relpath(e["source"], root / "raw"): e["reason"] for e in result["skipped"]}
    repaired = {os.path.relpath(e["source"], root / "raw"): e["repair"] for e in result["repaired"]}
    for relative, (name, outcome, reason) in expected.items():
        key = (name, os.path.basename(relative))
        if outcome == corpus.SKIPPED:
            assert key not in written and reason in skipped[relative]
        else:
            assert key in written, relative
        if outcome == corpus.REPAIRED:
            assert reason in repaired[relative]
    assert len(written) + len(skipped) == len(expected)
    assert any(path.endswith(".DS_Store") for path in result["ignored"])

    # The manifest lists the classes with their counts per split, as the records hold them.
    assert result["num_classes"] == 5
    for entry in result["classes"]:
        for split, split_rows in written_records(out).items():
            count = sum(row[records.SYNSET].decode() == entry["name"] for row in split_rows)
            assert entry[split] == count
        assert entry["label"] == class_names.index(entry["name"])
    assert sum(e["validation"] for e in result["classes"]) > 0
    assert manifest_module.verify_output(out)[1] == []


def test_train_and_val_class_folders_give_both_splits(tmp_path):
    raw = tmp_path / "raw"
    corpus.write_class_folders(str(raw / "train"), ("cats", "dogs"), clutter=False)
    validation = corpus.write_class_folders(str(raw / "validation"), ("cats", "dogs", "Ferrets"),
                                            per_class=2, seed=1, clutter=False)
    (raw / "notes").mkdir()  # beside train/: reported, not silently dropped
    result = convert(str(raw), str(tmp_path / "out"))
    assert result["layout"] == "folders"
    check_labels_and_names(str(tmp_path / "out"), ["Ferrets", "cats", "dogs"])
    ferrets = [o for name, o, _ in validation.values() if name == "Ferrets" and o != corpus.SKIPPED]
    assert result["splits"]["validation"]["classes"]["Ferrets"] == len(ferrets)
    assert "Ferrets" not in result["splits"]["train"]["classes"]
    assert any(e["source"].endswith("notes") for e in result["skipped"])

    refused = run_tool(f"--input_dir={raw}", f"--output_dir={tmp_path / 'out2'}", "--validation_fraction=0.2")
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if "--validation_fraction" in line]
    assert len(errors) == 1 and "validation folder" in errors[0] and "Traceback" not in refused.stderr


def test_labels_file_fixes_the_order_and_unlisted_folders_are_reported(tmp_path):
    raw = tmp_path / "raw"
    corpus.write_class_folders(str(raw), clutter=False)
    order = ["Zebra", "my cats", "hamsters", "Äpfel", "10"]  # no "chiens été"; hamsters: no folder
    labels_file = labels.write_labels(str(tmp_path / "order.txt"), order)
    result = convert(str(raw), str(tmp_path / "out"), labels_file=labels_file)
    check_labels_and_names(str(tmp_path / "out"), order)
    unlisted = [e for e in result["skipped"] if e["source"].endswith("chiens été")]
    assert len(unlisted) == 1 and "not listed in --labels_file" in unlisted[0]["reason"]
    assert "7 files" in unlisted[0]["reason"]
    assert {"label": 2, "name": "hamsters", "train": 0} == result["classes"][2]


def held_out_files(out: str) -> set[tuple[str, str]]:
    return {(row[records.SYNSET].decode(), row[records.FILENAME].decode())
            for row in read_records(out, "validation")}


@pytest.mark.slow
def test_validation_fraction_is_stable_across_workers_and_added_images(tmp_path, top_level):
    root, _, _ = top_level
    one_worker = str(root / "out")
    two_workers = str(tmp_path / "two")
    convert(str(root / "raw"), two_workers, validation_fraction=0.3, num_workers=2)
    assert held_out_files(two_workers) == held_out_files(one_worker)
    assert shard_digests(two_workers) == shard_digests(one_worker)

    # More images in every class: no old image changes split.
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw)
    corpus.write_class_folders(str(raw / "more"), per_class=6, seed=7, clutter=False)
    for name in corpus.FOLDER_CLASSES:
        for filename in os.listdir(raw / "more" / name):
            os.rename(raw / "more" / name / filename, raw / name / f"new {filename}")
    shutil.rmtree(raw / "more")
    grown = str(tmp_path / "grown")
    convert(str(raw), grown, validation_fraction=0.3)
    old_held_out = held_out_files(one_worker)
    new_held_out = held_out_files(grown)
    assert {item for item in new_held_out if not item[1].startswith("new ")} == old_held_out
    old_train = {(r[records.SYNSET].decode(), r[records.FILENAME].decode()) for r in read_records(one_worker, "train")}
    assert not old_train & new_held_out
    assert any(item[1].startswith("new ") for item in new_held_out)


def test_a_rerun_with_another_class_order_rewrites_every_shard(tmp_path):
    """Same images, other labels: a shard kept from the first run would mix the two lists."""
    raw = tmp_path / "raw"
    corpus.write_class_folders(str(raw), ("a", "b", "c"), per_class=3, clutter=False)
    out = str(tmp_path / "out")
    convert(str(raw), out, labels_file=labels.write_labels(str(tmp_path / "abc.txt"), ["a", "b", "c"]))
    convert(str(raw), out, labels_file=labels.write_labels(str(tmp_path / "cba.txt"), ["c", "b", "a"]))
    check_labels_and_names(out, ["c", "b", "a"])


@pytest.mark.parametrize("form", ["mixed", "mixed under train", "synsets at the top"])
def test_synset_folders_among_others_ask_for_a_layout(tmp_path, form):
    raw = tmp_path / "raw"
    base = raw / "train" if form == "mixed under train" else raw
    names = ("n01440764",) if form == "synsets at the top" else ("n01440764", "my cats")
    corpus.write_class_folders(str(base), names, per_class=1, clutter=False)
    result = run_tool(f"--input_dir={raw}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "--layout=folders" in line]
    assert len(errors) == 1, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_imagenet_layouts_write_labels_txt_of_the_1000_synsets(tmp_path):
    corpus.write_extracted(str(tmp_path / "raw"), corpus.make_images(per_class=1, quirks=False), [])
    result = convert(str(tmp_path / "raw"), str(tmp_path / "out"))
    assert labels.read_labels(str(tmp_path / "out" / "labels.txt")) == labels.imagenet_labels()
    assert result["num_classes"] == 1000
    counted = {e["name"]: e["train"] for e in result["classes"] if e["train"]}
    assert counted == {synset: 1 for synset in corpus.CLASSES}
    with pytest.raises(ValueError, match="--validation_fraction applies to class folders"):
        convert(str(tmp_path / "raw"), str(tmp_path / "out2"), validation_fraction=0.1)
    with open(tmp_path / "out" / "manifest.json", encoding="utf-8") as handle:
        assert json.load(handle)["labels_file"] == "labels.txt"


def test_class_folders_whose_names_cannot_be_a_line_of_labels_txt_are_reported(tmp_path):
    raw = tmp_path / "raw"
    corpus.write_class_folders(str(raw), ("cats", " padded"), per_class=1, clutter=False)
    os.makedirs(os.path.join(os.fsencode(str(raw)), b"caf\xe9"))  # Latin-1, not UTF-8
    with open(os.path.join(os.fsencode(str(raw)), b"caf\xe9", b"1.jpg"), "wb") as handle:
        handle.write(corpus.good_jpeg(np.random.default_rng(0)))
    result = convert(str(raw), str(tmp_path / "out"))
    check_labels_and_names(str(tmp_path / "out"), ["cats"])
    reasons = {os.path.basename(e["source"]): e["reason"] for e in result["skipped"]}
    assert "leading/trailing spaces" in reasons[" padded"]
    assert "not UTF-8" in reasons["caf\\xe9"]


def test_class_folders_without_a_validation_split_warn_how_to_get_one(tmp_path, caplog):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / "raw" / name).mkdir(parents=True)
        for number in range(2):
            Image.new("RGB", (40, 30), (number * 90, 40, 200)).save(
                tmp_path / "raw" / name / f"{number}.jpg")
    with caplog.at_level("WARNING"):
        convert(str(tmp_path / "raw"), str(tmp_path / "out"))
    [warning] = [r.getMessage() for r in caplog.records if "No validation split" in r.getMessage()]
    assert "--validation_fraction=0.1" in warning and "--novalidation" in warning, warning
