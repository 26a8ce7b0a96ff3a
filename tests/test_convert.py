"""tools/build_tfrecords.py end to end, on small generated corpora in each raw layout."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import imagenet
from alexnet_tf.convert import main as conversion
from alexnet_tf.data import records
from tests import corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "build_tfrecords.py")


def read_records(output_dir: str, split: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(output_dir, f"{split}-*"))):
        for serialized in tf.data.TFRecordDataset(path):
            features = tf.io.parse_single_example(serialized, records.FULL_PARSE_SPEC)
            row = {key: value.numpy() for key, value in features.items() if not isinstance(value, tf.SparseTensor)}
            row.update({key: value.values.numpy() for key, value in features.items() if isinstance(value, tf.SparseTensor)})
            row["shard"] = os.path.basename(path)
            rows.append(row)
    return rows


def shard_digests(output_dir: str) -> dict[str, str]:
    return {
        os.path.basename(path): hashlib.sha256(open(path, "rb").read()).hexdigest()
        for path in sorted(glob.glob(os.path.join(output_dir, "*-of-*")))
    }


def run_tool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.fixture(scope="module")
def raw_images():
    return corpus.make_images(), corpus.validation_images()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, raw_images):
    root = tmp_path_factory.mktemp("extracted")
    corpus.write_extracted(str(root / "raw"), *raw_images)
    manifest = conversion.convert(str(root / "raw"), str(root / "out"), train_shards=3, validation_shards=2, num_workers=1)
    return root, manifest


def check_every_image_accounted(output_dir, manifest, train, validation):
    """Each input image is in exactly one record or in the skipped report, with the right outcome."""
    written = [row[records.FILENAME].decode() for split in ("train", "validation") for row in read_records(output_dir, split)]
    assert len(written) == len(set(written))
    skipped = {os.path.basename(entry["source"]): entry["reason"] for entry in manifest["skipped"]}
    repaired = {os.path.basename(entry["source"]): entry["repair"] for entry in manifest["repaired"]}
    for image in train + validation:
        if image.outcome == corpus.SKIPPED:
            assert image.filename not in written
            assert image.reason in skipped[image.filename]
        else:
            assert written.count(image.filename) == 1
            assert image.filename not in skipped
        if image.outcome == corpus.REPAIRED:
            assert image.reason in repaired[image.filename]
    assert set(written) | set(skipped) == {image.filename for image in train + validation}


def test_extracted_layout(extracted, raw_images):
    root, manifest = extracted
    train, validation = raw_images
    out = str(root / "out")
    assert manifest["layout"] == "extracted"
    assert sorted(os.listdir(out)) == [".checks", ".lock", ".shards", "labels.txt", "manifest.json", "train-00000-of-00003", "train-00001-of-00003",
                                       "train-00002-of-00003", "validation-00000-of-00002", "validation-00001-of-00002"]
    check_every_image_accounted(out, manifest, train, validation)
    assert manifest["splits"]["train"]["images"] == sum(i.outcome != corpus.SKIPPED for i in train)
    assert manifest["splits"]["validation"]["classes"] == {synset: 2 for synset in corpus.CLASSES}
    assert sorted(os.path.basename(p) for p in manifest["ignored"]) == [".DS_Store", ".DS_Store", "Thumbs.db", "readme.txt"]
    # Shards balanced within one record.
    sizes = [shard["records"] for shard in manifest["splits"]["train"]["shards"]]
    assert max(sizes) - min(sizes) <= 1


def test_records_hold_what_the_pipeline_needs(extracted, raw_images):
    root, _ = extracted
    by_name = {image.filename: image for image in raw_images[0] + raw_images[1]}
    for split in ("train", "validation"):
        for row in read_records(str(root / "out"), split):
            source = by_name[row[records.FILENAME].decode()]
            assert row[records.LABEL] == imagenet.synset_to_label()[source.synset]
            assert row[records.SYNSET].decode() == source.synset
            assert row[records.TEXT].decode() == imagenet.class_name_for(source.synset)
            assert (row[records.FORMAT], row[records.COLORSPACE], row[records.CHANNELS]) == (b"JPEG", b"RGB", 3)
            pixels = tf.io.decode_jpeg(row[records.ENCODED]).numpy()
            assert pixels.shape == (row[records.HEIGHT], row[records.WIDTH], 3)
            if source.outcome == corpus.STORED:
                assert row[records.ENCODED] == source.data  # never re-encoded


def test_training_examples_are_shuffled_across_shards(extracted):
    root, _ = extracted
    rows = read_records(str(root / "out"), "train")
    first_shard_classes = {row[records.SYNSET] for row in rows if row["shard"] == "train-00000-of-00003"}
    assert len(first_shard_classes) > 1
    validation_order = [row[records.FILENAME] for row in read_records(str(root / "out"), "validation")]
    assert validation_order == sorted(validation_order)


def test_sorted_validation_folder(tmp_path, raw_images):
    corpus.write_extracted(str(tmp_path / "raw"), [], raw_images[1], sorted_validation=True)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), validation_shards=1, num_workers=1)
    assert manifest["missing_splits"] == ["train"]
    labels = {row[records.FILENAME].decode(): row[records.SYNSET].decode() for row in read_records(str(tmp_path / "out"), "validation")}
    assert labels == {image.filename: image.synset for image in raw_images[1]}


def test_kaggle_layout(tmp_path, raw_images, extracted):
    corpus.write_kaggle(str(tmp_path / "raw"), *raw_images)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=3, validation_shards=2, num_workers=1)
    assert manifest["layout"] == "kaggle"
    check_every_image_accounted(str(tmp_path / "out"), manifest, *raw_images)
    rows = read_records(str(tmp_path / "out"), "validation")
    for row in rows:
        assert row[records.TEXT].decode() == f"kaggle name of {row[records.SYNSET].decode()}"
        boxes = np.stack([row[records.BBOX_XMIN], row[records.BBOX_YMIN], row[records.BBOX_XMAX], row[records.BBOX_YMAX]])
        assert boxes.shape == (4, 1) and boxes.min() >= 0.0 and boxes.max() <= 1.0
        assert boxes[3, 0] == 1.0  # ymax of 500+ pixels is clamped to the image
    first = raw_images[0][0]
    boxed = [row for row in read_records(str(tmp_path / "out"), "train") if row[records.FILENAME].decode() == first.filename]
    assert len(boxed[0][records.BBOX_XMIN]) == 2
    # Same images, same labels: the training shards differ from the extracted layout's only by the boxes.
    assert manifest["splits"]["train"]["classes"] == extracted[1]["splits"]["train"]["classes"]


def test_tar_layout_matches_extracted_and_refuses_unsafe_members(tmp_path, raw_images, extracted):
    corpus.write_tars(str(tmp_path / "raw"), *raw_images, hostile_members=True)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=3, validation_shards=2, num_workers=1)
    assert manifest["layout"] == "tars"
    assert shard_digests(str(tmp_path / "out")) == shard_digests(str(extracted[0] / "out"))
    reasons = [entry["reason"] for entry in manifest["skipped"]]
    assert any("'..'" in reason for reason in reasons)
    assert any("absolute path" in reason for reason in reasons)
    assert any("is a link" in reason for reason in reasons)
    assert not os.path.exists(tmp_path / "escaped.JPEG") and sorted(os.listdir(tmp_path)) == ["out", "raw"]


def test_truncated_class_tar_is_reported_and_the_rest_converted(tmp_path, raw_images):
    train, validation = raw_images
    corpus.write_tars(str(tmp_path / "raw"), train, validation)
    archive = str(tmp_path / "raw" / "ILSVRC2012_img_train.tar")
    with open(archive, "r+b") as handle:
        handle.truncate(os.path.getsize(archive) * 2 // 3)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=2, validation_shards=1, num_workers=1)
    assert any("truncated" in entry["reason"] or "cut short" in entry["reason"] for entry in manifest["skipped"])
    assert 0 < manifest["splits"]["train"]["images"] < sum(i.outcome != corpus.SKIPPED for i in train)
    assert manifest["splits"]["validation"]["images"] == len(validation)


def test_label_offset(tmp_path, raw_images):
    corpus.write_extracted(str(tmp_path / "raw"), [], raw_images[1])
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), validation_shards=1, num_workers=1, label_offset=1)
    assert manifest["options"]["label_offset"] == 1
    for row in read_records(str(tmp_path / "out"), "validation"):
        assert row[records.LABEL] == imagenet.synset_to_label()[row[records.SYNSET].decode()] + 1


def test_same_shards_whatever_the_worker_count(tmp_path, raw_images, extracted):
    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)
    result = run_tool(f"--input_dir={tmp_path / 'raw'}", f"--output_dir={tmp_path / 'out'}", "--train_shards=3",
                      "--validation_shards=2", "--num_workers=2")
    assert result.returncode == 0, result.stderr
    assert "images written" in result.stderr and "images/s" in result.stderr
    assert shard_digests(str(tmp_path / "out")) == shard_digests(str(extracted[0] / "out"))
    # The tool never loads TensorFlow and writes with alexnet_tf.convert.tfrecord; this process has
    # TensorFlow loaded and wrote the fixture with tf.io.TFRecordWriter: same shards, same manifest.
    with open(tmp_path / "out" / "manifest.json", encoding="utf-8") as handle:
        assert json.load(handle)["splits"] == extracted[1]["splits"]


def test_converting_never_imports_tensorflow(tmp_path, raw_images):
    """TensorFlow's import costs seconds of CPU per process: the converter (parent and workers,
    every stage in-process with --num_workers=1) must not need it; only --verify does."""
    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from alexnet_tf.convert import cli, main\n"
        "for workers in (1, 2):\n"
        "    main.convert(sys.argv[2], sys.argv[3] + str(workers), train_shards=3, validation_shards=2, num_workers=workers)\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", script, REPO, str(tmp_path / "raw"), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert shard_digests(str(tmp_path / "out1")) == shard_digests(str(tmp_path / "out2"))


def test_resume_keeps_complete_shards_and_redoes_the_rest(tmp_path, raw_images, extracted):
    """The states a crash can leave: shards missing, a shard renamed but not recorded, a partial file."""
    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)
    out = tmp_path / "out"
    conversion.convert(str(tmp_path / "raw"), str(out), train_shards=3, validation_shards=2, num_workers=1)
    os.remove(out / "manifest.json")
    os.remove(out / "train-00001-of-00003")
    os.remove(out / ".shards" / "train-00002-of-00003.json")  # killed between the rename and its status
    with open(out / "train-00002-of-00003", "r+b") as handle:
        handle.truncate(100)
    os.makedirs(out / ".incomplete", exist_ok=True)
    (out / ".incomplete" / "validation-00000-of-00002").write_bytes(b"half a shard")
    kept = os.path.getmtime(out / "train-00000-of-00003")
    manifest = conversion.convert(str(tmp_path / "raw"), str(out), train_shards=3, validation_shards=2, num_workers=1)
    assert os.path.getmtime(out / "train-00000-of-00003") == kept
    assert shard_digests(str(out)) == shard_digests(str(extracted[0] / "out"))
    assert manifest == {**extracted[1], "input_dir": manifest["input_dir"],
                        "skipped": manifest["skipped"], "repaired": manifest["repaired"], "ignored": manifest["ignored"]}
    assert [os.path.basename(e["source"]) for e in manifest["skipped"]] == [os.path.basename(e["source"]) for e in extracted[1]["skipped"]]
    assert not os.path.exists(out / ".incomplete")


def test_resume_after_sigkill_in_the_middle(tmp_path):
    """A real kill -9 while shards are being written, then the same command again."""
    rng = np.random.default_rng(7)
    train = [corpus.RawImage(corpus.CLASSES[i % 3], f"{corpus.CLASSES[i % 3]}_{i}.JPEG", corpus.good_jpeg(rng, 160, 120), corpus.STORED)
             for i in range(900)]
    corpus.write_extracted(str(tmp_path / "raw"), train, [])
    args = [TOOL, f"--input_dir={tmp_path / 'raw'}", "--train_shards=60", "--num_workers=1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, *args, f"--output_dir={tmp_path / 'out'}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status_dir = tmp_path / "out" / ".shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(status_dir.glob("*.json"))) < 3:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete_at_kill = len(list(status_dir.glob("*.json")))
    assert 3 <= complete_at_kill < 60, "the kill should land in the middle of the run"
    assert not (tmp_path / "out" / "manifest.json").exists()
    resumed = subprocess.run([sys.executable, *args, f"--output_dir={tmp_path / 'out'}"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stderr
    reference = subprocess.run([sys.executable, *args, f"--output_dir={tmp_path / 'reference'}"], env=env,
                               capture_output=True, text=True, timeout=120)
    assert reference.returncode == 0, reference.stderr
    assert shard_digests(str(tmp_path / "out")) == shard_digests(str(tmp_path / "reference"))
    assert len(read_records(str(tmp_path / "out"), "train")) == 900


def test_verify_passes_then_catches_a_corrupted_shard(tmp_path, raw_images):
    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)
    out = tmp_path / "out"
    conversion.convert(str(tmp_path / "raw"), str(out), train_shards=2, validation_shards=1, num_workers=1)
    result = run_tool(f"--output_dir={out}", "--verify")
    assert result.returncode == 0, result.stderr
    assert "Verified" in result.stderr
    shard = out / "train-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run_tool(f"--output_dir={out}", "--verify")
    assert result.returncode == 1
    assert "train-00001-of-00002: sha256 does not match" in result.stderr
    assert "Traceback" not in result.stderr


def test_stale_shards_of_another_count_are_refused(extracted, tmp_path):
    root, _ = extracted
    with pytest.raises(conversion.ConversionError, match="train shards of another count"):
        conversion.convert(str(root / "raw"), str(root / "out"), train_shards=5, validation_shards=2, num_workers=1)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--input_dir={empty}", "--output_dir={out}"], 1, "holds no known layout"),
        (["--input_dir={missing}", "--output_dir={out}"], 1, "is not a folder"),
        (["--input_dir={empty}"], 1, "--output_dir"),
        (["--input_dir={empty}", "--output_dir={out}", "--train_shards=0"], 1, "--train_shards"),
        (["--output_dir={out}", "--verify"], 1, "does not exist: run the conversion first"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "out": tmp_path / "out"}
    result = run_tool(*[arg.format(**paths) for arg in args])
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_disk_stops_with_a_clear_error_and_no_complete_looking_shard(tmp_path, raw_images, monkeypatch):
    """ENOSPC in the middle of a shard: the run stops, names the shard, and leaves no shard behind."""
    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)
    real_writer = tf.io.TFRecordWriter

    class FillsUp:
        def __init__(self, path):
            self.inner, self.written = real_writer(path), 0

        def write(self, record):
            self.written += 1
            if self.written == 3:
                raise OSError(28, "No space left on device")
            self.inner.write(record)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

    monkeypatch.setattr(tf.io, "TFRecordWriter", FillsUp)
    with pytest.raises(conversion.ConversionError, match="writing train-00000-of-00002 .* No space left on device"):
        conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=2, validation_shards=1, num_workers=1)
    assert not list((tmp_path / "out").glob("train-*")) and not (tmp_path / "out" / "manifest.json").exists()
    monkeypatch.setattr(tf.io, "TFRecordWriter", real_writer)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=2, validation_shards=1, num_workers=1)
    assert manifest["splits"]["train"]["images"] == sum(i.outcome != corpus.SKIPPED for i in raw_images[0])


def test_hostile_entries_are_skipped_with_reasons_or_converted(tmp_path):
    rng = np.random.default_rng(5)
    synset = corpus.CLASSES[0]
    class_dir = tmp_path / "raw" / "train" / synset
    class_dir.mkdir(parents=True)
    good = corpus.good_jpeg(rng)
    (class_dir / "plain.JPEG").write_bytes(good)
    (class_dir / "a_directory.JPEG").mkdir()
    os.symlink("loop_b.JPEG", class_dir / "loop_a.JPEG")
    os.symlink("loop_a.JPEG", class_dir / "loop_b.JPEG")
    non_utf8 = os.fsencode(str(class_dir)) + b"/caf\xe9.JPEG"
    with open(non_utf8, "wb") as handle:
        handle.write(good)
    (class_dir / "garbage_after_eoi.JPEG").write_bytes(good + b"\x00trailing junk" * 10)
    (tmp_path / "raw" / "train" / "loose_file.JPEG").write_bytes(good)

    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=1, num_workers=1)
    reasons = {os.path.basename(entry["source"]): entry["reason"] for entry in manifest["skipped"]}
    assert "is a directory" in reasons["a_directory.JPEG"]
    assert "symbolic links" in reasons["loop_a.JPEG"] and "symbolic links" in reasons["loop_b.JPEG"]
    assert "not inside a <wnid>/ class folder" in reasons["loose_file.JPEG"]
    written = {row[records.FILENAME] for row in read_records(str(tmp_path / "out"), "train")}
    # libjpeg stops at the end-of-image marker, so trailing bytes are harmless: the file is kept.
    assert written == {b"plain.JPEG", b"caf\xe9.JPEG", b"garbage_after_eoi.JPEG"}
    assert manifest["splits"]["train"]["images"] == 3
    json.dumps(manifest, ensure_ascii=False).encode("utf-8")  # a non-UTF-8 name must not break the manifest
    assert sorted(os.listdir(tmp_path)) == ["out", "raw"]


def test_our_writer_failing_disk_stops_with_a_clear_error_and_no_complete_looking_shard(tmp_path, raw_images, monkeypatch):
    """The same as above for the writer the tool uses when TensorFlow is not loaded."""
    from alexnet_tf.convert import shards, tfrecord

    corpus.write_extracted(str(tmp_path / "raw"), *raw_images)

    class FillsUp(tfrecord.RecordWriter):
        written = 0

        def write(self, record):
            FillsUp.written += 1
            if FillsUp.written == 3:
                raise OSError(28, "No space left on device")
            super().write(record)

    monkeypatch.setattr(shards, "_record_writer", FillsUp)
    with pytest.raises(conversion.ConversionError, match="writing train-00000-of-00002 .* No space left on device"):
        conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=2, validation_shards=1, num_workers=1)
    assert not list((tmp_path / "out").glob("train-*")) and not (tmp_path / "out" / "manifest.json").exists()
    monkeypatch.setattr(shards, "_record_writer", tfrecord.RecordWriter)
    manifest = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "out"), train_shards=2, validation_shards=1, num_workers=1)
    for shard in manifest["splits"]["train"]["shards"]:  # the sha256 and size it computed while writing
        data = (tmp_path / "out" / shard["shard"]).read_bytes()
        assert (shard["sha256"], shard["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
    monkeypatch.undo()
    reference = conversion.convert(str(tmp_path / "raw"), str(tmp_path / "tf_out"), train_shards=2, validation_shards=1, num_workers=1)
    assert manifest["splits"] == reference["splits"]
    assert shard_digests(str(tmp_path / "out")) == shard_digests(str(tmp_path / "tf_out"))


# --- alexnet_tf.convert.tfrecord: the records without TensorFlow, byte for byte as TensorFlow writes them


def test_crc32c_numpy_matches_the_definition():
    from alexnet_tf.convert import tfrecord

    assert tfrecord.crc32c_numpy(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert tfrecord.crc32c_numpy(b"") == 0
    rng = np.random.default_rng(9)
    # Around the block (256 bytes) and group (64 blocks, 64 x 64 blocks) boundaries of its levels.
    for size in (1, 3, 4, 5, 255, 256, 257, 16383, 16384, 16385, 1 << 20, (1 << 20) + 1):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert tfrecord.crc32c_numpy(data) == tfrecord._crc32c_bytewise(data), size
    assert tfrecord.crc32c_numpy(b"\0" * 70000) == tfrecord._crc32c_bytewise(b"\0" * 70000)


def test_native_crc32c_is_used_when_installed(monkeypatch):
    import types

    from alexnet_tf.convert import tfrecord

    stub = types.ModuleType("google_crc32c")
    stub.implementation, stub.value = "c", tfrecord.crc32c_numpy
    monkeypatch.setitem(sys.modules, "google_crc32c", stub)
    monkeypatch.setitem(sys.modules, "crc32c", None)  # as if not installed
    assert tfrecord._native_crc32c() is tfrecord.crc32c_numpy
    stub.implementation = "python"  # its pure-Python fallback would be slower than ours
    assert tfrecord._native_crc32c() is None
    stub.implementation, stub.value = "c", lambda data: 0  # a broken one is not used either
    assert tfrecord._native_crc32c() is None


def tensorflow_example(*, jpeg_bytes, label, synset, text, height, width, filename, boxes) -> bytes:
    """The reference: the record built with TensorFlow's own protobuf classes."""

    def feature(kind, values):
        lists = {"bytes": tf.train.BytesList, "int64": tf.train.Int64List, "float": tf.train.FloatList}
        return tf.train.Feature(**{f"{kind}_list": lists[kind](value=values)})

    features = {
        records.ENCODED: feature("bytes", [jpeg_bytes]), records.FORMAT: feature("bytes", [b"JPEG"]),
        records.LABEL: feature("int64", [label]), records.SYNSET: feature("bytes", [synset.encode("utf-8")]),
        records.TEXT: feature("bytes", [text.encode("utf-8")]), records.HEIGHT: feature("int64", [height]),
        records.WIDTH: feature("int64", [width]), records.CHANNELS: feature("int64", [3]),
        records.COLORSPACE: feature("bytes", [b"RGB"]),
        records.FILENAME: feature("bytes", [filename.encode("utf-8", "surrogateescape")]),
    }
    if boxes:
        for position, key in enumerate((records.BBOX_XMIN, records.BBOX_YMIN, records.BBOX_XMAX, records.BBOX_YMAX)):
            features[key] = feature("float", [box[position] for box in boxes])
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)


def test_examples_and_files_are_those_of_tensorflow(tmp_path):
    from alexnet_tf.convert import tfrecord

    rng = np.random.default_rng(4)
    cases = []
    for index in range(40):
        size = int(rng.choice([0, 1, 127, 128, 300, 16384, 70001]))
        boxes = tuple(tuple(float(value) for value in rng.random(4)) for _ in range(index % 3))
        cases.append(dict(
            jpeg_bytes=rng.integers(0, 256, size, dtype=np.uint8).tobytes(),
            label=int(rng.choice([0, 1, 127, 128, 999, 1000, 2**40])),
            synset=str(rng.choice(["n01440764", "", "n0144076\u00e9"])),
            text=str(rng.choice(["tench, Tinca tinca", "", "caf\u00e9 \u2615"])),
            height=int(rng.integers(1, 70000)), width=int(rng.integers(1, 300)),
            filename=str(rng.choice(["a.JPEG", "caf\udce9.JPEG", ""])),  # a non-UTF-8 name, as os.scandir gives it
            boxes=boxes,
        ))
    with tf.io.TFRecordWriter(str(tmp_path / "tf")) as theirs, tfrecord.RecordWriter(str(tmp_path / "ours")) as ours:
        for case in cases:
            expected = tensorflow_example(**case)
            serialized = tfrecord.serialize_example(**case)
            assert serialized == expected, case["boxes"]
            boxes = tuple(records.BoundingBox(*box) for box in case["boxes"])
            assert records.build_example(**{**case, "boxes": boxes}) == expected
            theirs.write(expected)
            ours.write(serialized)
        ours.sync()
        written = ours.sha256(), ours.size
    data = (tmp_path / "ours").read_bytes()
    assert data == (tmp_path / "tf").read_bytes()
    assert written == (hashlib.sha256(data).hexdigest(), len(data))
    assert len(list(tf.data.TFRecordDataset(str(tmp_path / "ours")))) == len(cases)


def test_tfrecord_writes_every_key_that_records_parses():
    from alexnet_tf.convert import tfrecord

    assert set(records.FULL_PARSE_SPEC) == set(tfrecord._KEYS_WITH_BOXES)