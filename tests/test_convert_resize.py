"""`--resize_shorter_side [--center_crop] [--jpeg_quality]`: the paper's downscaled records.

The corpus images are 48..120 pixels a side, so a target of 56 exercises both the images that
are scaled down and the ones that must be left alone (never scaled up).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf.convert import shards
from alexnet_tf.convert import main as conversion
from alexnet_tf.data import records
from alexnet_tf.convert.resize import ResizeOptions
from tests import corpus
from tests.test_convert import read_records, run_tool, shard_digests

TARGET = 56


def original_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.height, image.width


def convert(raw: str, out: str, resize: ResizeOptions = ResizeOptions(), **options) -> dict:
    return conversion.convert(raw, out, train_shards=3, validation_shards=1, num_workers=1,
                              resize=resize, **options)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[str, dict[str, corpus.RawImage]]:
    root = tmp_path_factory.mktemp("raw")
    train, validation = corpus.make_images(), corpus.validation_images()
    corpus.write_extracted(str(root), train, validation)
    return str(root), {image.filename: image for image in train + validation}


@pytest.fixture(scope="module")
def resized(raw, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("resized"))
    return out, convert(raw[0], out, ResizeOptions(TARGET))


def all_records(output_dir: str) -> list[dict]:
    return read_records(output_dir, "train") + read_records(output_dir, "validation")


def test_larger_images_are_scaled_to_the_shorter_side_and_smaller_ones_kept_as_they_are(raw, resized):
    _, by_name = raw
    rows = all_records(resized[0])
    assert len(rows) == sum(image.outcome != corpus.SKIPPED for image in by_name.values())
    scaled = kept = 0
    for row in rows:
        source = by_name[row[records.FILENAME].decode()]
        height, width = original_size(source.data)
        stored = (int(row[records.HEIGHT]), int(row[records.WIDTH]))
        assert tf.io.decode_jpeg(row[records.ENCODED]).shape == (*stored, 3)
        if min(height, width) > TARGET:
            scaled += 1
            assert min(stored) == TARGET
            # The aspect ratio survives to the rounding of the longer side.
            assert max(stored) == round(max(height, width) * TARGET / min(height, width))
        else:
            kept += 1
            assert stored == (height, width)  # never scaled up
            if source.outcome == corpus.STORED:
                assert row[records.ENCODED] == source.data  # nor re-encoded
    assert scaled >= 5 and kept >= 5, (scaled, kept)


def test_center_crop_stores_the_central_square(raw, tmp_path):
    _, by_name = raw
    out = str(tmp_path / "out")
    convert(raw[0], out, ResizeOptions(TARGET, center_crop=True, jpeg_quality=90))
    for row in all_records(out):
        height, width = original_size(by_name[row[records.FILENAME].decode()].data)
        side = min(TARGET, height, width)
        assert (int(row[records.HEIGHT]), int(row[records.WIDTH])) == (side, side)
        assert tf.io.decode_jpeg(row[records.ENCODED]).shape == (side, side, 3)


def test_the_scaled_image_shows_what_the_original_did(tmp_path):
    """A red square on grey at a known place: after scaling and the centre crop it is where
    the box says, and its colour survived the antialiased filter."""
    pixels = np.full((600, 800, 3), 128, np.uint8)  # large enough for libjpeg's 1/2 draft decode
    pixels[200:400, 400:600] = (230, 20, 20)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    synset = corpus.CLASSES[0]
    train = [corpus.RawImage(synset, f"{synset}_red.JPEG", buffer.getvalue(), corpus.STORED)]
    corpus.write_kaggle(str(tmp_path / "raw"), train, [])
    with open(tmp_path / "raw" / "LOC_train_solution.csv", "w") as handle:
        handle.write(f"ImageId,PredictionString\n{synset}_red,{synset} 400 200 600 400\n")

    conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=1, num_workers=1,
                       resize=ResizeOptions(100, center_crop=True))

    (row,) = read_records(str(tmp_path / "out"), "train")
    # 800x600 -> 133x100, columns 16..115 kept: x 400 -> 66.5 - 16 = 50.5, x 600 -> 83.75.
    box = [row[key][0] for key in (records.BBOX_XMIN, records.BBOX_YMIN, records.BBOX_XMAX, records.BBOX_YMAX)]
    np.testing.assert_allclose(box, [0.505, 1 / 3, 0.8375, 2 / 3], atol=1e-6)
    image = tf.io.decode_jpeg(row[records.ENCODED]).numpy().astype(int)
    red = (image[..., 0] > 180) & (image[..., 1] < 70)
    rows, columns = np.nonzero(red)
    assert abs(columns.min() - 50.5) <= 1.5 and abs(columns.max() + 1 - 83.75) <= 1.5
    assert abs(rows.min() - 33.3) <= 1.5 and abs(rows.max() + 1 - 66.7) <= 1.5


@pytest.mark.slow
def test_the_manifest_records_the_option_and_verify_checks_the_promise(resized, tmp_path):
    out, manifest = resized
    assert manifest["options"]["resize_shorter_side"] == TARGET
    assert manifest["options"]["center_crop"] is False
    assert manifest["options"]["jpeg_quality"] == 95
    result = run_tool(f"--output_dir={out}", "--verify")
    assert result.returncode == 0, result.stderr
    assert "Verified" in result.stderr

    # Originals under a manifest that promises 56-pixel images: --verify must say so.
    originals = tmp_path / "originals"
    convert(manifest["input_dir"], str(originals))
    promised = json.loads((originals / "manifest.json").read_text())
    promised["options"].update(resize_shorter_side=TARGET, center_crop=True)
    (originals / "manifest.json").write_text(json.dumps(promised))
    result = run_tool(f"--output_dir={originals}", "--verify")
    assert result.returncode == 1
    assert f"over --resize_shorter_side={TARGET}" in result.stderr
    assert "not square although --center_crop" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_options_leave_the_digest_and_the_records_of_earlier_versions(raw, tmp_path):
    """Shards converted before the option existed are still resumed, not rewritten."""
    out = str(tmp_path / "out")
    manifest = convert(raw[0], out)
    assert manifest["options"]["resize_shorter_side"] is None
    names = tuple(corpus.CLASSES)
    task = shards.ShardTask(out, "train", 0, 1, (), {}, 0, 1, names)
    assert task.digest() == shards.ShardTask(out, "train", 0, 1, (), {}, 0, 1, names, ResizeOptions()).digest()
    assert task.digest() != shards.ShardTask(out, "train", 0, 1, (), {}, 0, 1, names, ResizeOptions(256)).digest()


def test_a_rerun_with_other_settings_rewrites_every_shard(raw, resized, tmp_path):
    out = str(tmp_path / "out")
    plain = convert(raw[0], out)
    plain_digests = shard_digests(out)
    manifest = convert(raw[0], out, ResizeOptions(TARGET))
    assert shard_digests(out) == shard_digests(resized[0]) != plain_digests
    assert manifest["splits"] == resized[1]["splits"]
    convert(raw[0], out)
    assert shard_digests(out) == plain_digests and plain["options"]["resize_shorter_side"] is None


def test_an_interrupted_resized_conversion_resumes_to_the_same_shards(raw, resized, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    real_write_shard = shards.write_shard
    written = []

    def crash_after_two(task):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(task.name)
        return real_write_shard(task)

    monkeypatch.setattr(shards, "write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        convert(raw[0], out, ResizeOptions(TARGET))
    monkeypatch.setattr(shards, "write_shard", real_write_shard)
    kept = {name: os.path.getmtime(os.path.join(out, name)) for name in written}

    manifest = convert(raw[0], out, ResizeOptions(TARGET))

    assert {name: os.path.getmtime(os.path.join(out, name)) for name in written} == kept
    assert shard_digests(out) == shard_digests(resized[0])
    assert manifest["splits"] == resized[1]["splits"]


@pytest.mark.parametrize("args, message", [
    (["--center_crop"], "--center_crop needs --resize_shorter_side"),
    (["--resize_shorter_side=0"], "resize_shorter_side"),
    (["--resize_shorter_side=256", "--jpeg_quality=101"], "jpeg_quality"),
])
def test_bad_resize_flags_give_a_one_line_error(raw, tmp_path, args, message):
    result = run_tool(f"--input_dir={raw[0]}", f"--output_dir={tmp_path / 'out'}", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
