"""The converter and --verify on output folders that are wrong, altered or not ours.

Each case is what a careless user does: an --output_dir that is a file or sits inside the input,
a run whose every image is refused, a manifest of `{}`, a shard copied beside the others, two
valid shards swapped. Each must end with one line naming the file or flag, and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from alexnet_tf.convert import main as conversion
from tests import corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "build_tfrecords.py")


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("E")]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("raw"))
    corpus.write_extracted(root, corpus.make_images(quirks=False), corpus.validation_images())
    return root


@pytest.fixture(scope="module")
def converted(raw, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("converted") / "out")
    conversion.convert(raw, out, train_shards=4, validation_shards=1, num_workers=1)
    return out


@pytest.fixture
def output(converted, tmp_path) -> str:
    copy = str(tmp_path / "out")
    shutil.copytree(converted, copy)
    return copy


@pytest.mark.parametrize("where, message", [("file", "is a file, not a folder"),
                                            ("under_file", "lies under a file")])
def test_output_dir_that_is_a_file_or_under_one_is_one_line(raw, tmp_path, where, message):
    (tmp_path / "taken").write_text("not a folder\n")
    output_dir = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "out"
    result = run_tool(f"--input_dir={raw}", f"--output_dir={output_dir}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any(f"--output_dir={output_dir} {message}" in line for line in error_lines(result)), result.stderr


def test_unwritable_output_dir_is_one_line_naming_it(raw, tmp_path, monkeypatch):
    # Tests run as root here, which writes anywhere: make the folder's creation refuse instead.
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", refuse)
    with pytest.raises(conversion.ConversionError, match=r"--output_dir=.*/out is not writable \(Permission denied"):
        conversion.convert(raw, str(tmp_path / "out"), train_shards=1, validation_shards=1, num_workers=1)


def test_output_dir_inside_an_input_split_is_refused_before_writing(raw):
    inside = os.path.join(raw, "train", "records")
    result = run_tool(f"--input_dir={raw}", f"--output_dir={inside}", "--num_workers=1")
    assert result.returncode == 1
    assert any(f"--output_dir={inside} is inside {os.path.join(raw, 'train')}" in line and "Refused" in line
               for line in error_lines(result)), result.stderr
    assert not os.path.exists(inside)


def test_a_split_whose_every_image_is_refused_fails(raw, tmp_path):
    result = run_tool(f"--input_dir={raw}", f"--output_dir={tmp_path / 'out'}", "--max_pixels=1",
                      "--num_workers=1", "--train_shards=1", "--validation_shards=1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any("no train image was written: all 12 listed were skipped" in line and "--max_pixels" in line
               for line in error_lines(result)), result.stderr


def test_verify_of_an_empty_manifest_is_one_line(output):
    with open(os.path.join(output, "manifest.json"), "w") as handle:
        handle.write("{}")
    result = run_tool(f"--output_dir={output}", "--verify")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any("manifest.json has no 'options' or 'splits'" in line for line in error_lines(result)), result.stderr


def test_verify_names_a_shard_the_manifest_does_not_list(output):
    shutil.copy(os.path.join(output, "train-00000-of-00004"), os.path.join(output, "train-00000-of-00005"))
    result = run_tool(f"--output_dir={output}", "--verify")
    assert result.returncode == 1
    assert any("train-00000-of-00005: named like a shard but not in manifest.json" in line
               for line in error_lines(result)), result.stderr


def test_verify_catches_valid_shards_swapped_by_their_sha256(output):
    """Both shards read, parse and decode, with the record counts the manifest gives them:
    only their sha256 tells that they are not the shards the converter wrote there."""
    with open(os.path.join(output, "manifest.json")) as handle:
        shards = json.load(handle)["splits"]["train"]["shards"]
    first, second = next((a, b) for a in shards for b in shards
                         if a["shard"] < b["shard"] and a["records"] == b["records"])
    paths = [os.path.join(output, entry["shard"]) for entry in (first, second)]
    os.rename(paths[0], paths[0] + ".swap")
    os.rename(paths[1], paths[0])
    os.rename(paths[0] + ".swap", paths[1])
    result = run_tool(f"--output_dir={output}", "--verify")
    assert result.returncode == 1
    for entry in (first, second):
        assert any(f"{entry['shard']}: sha256 does not match" in line for line in error_lines(result)), result.stderr
