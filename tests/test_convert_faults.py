"""tools/build_tfrecords.py survives faults: kill -9 at every stage, then the same command again.

Issue 6, "Survive faults". Every kill is a real SIGKILL of a real converter process:

* at a chosen stage, deterministically: the converter runs through a small wrapper (written to a
  temporary folder; test-only, the product has no hooks) that imports the package, patches one
  function so that its Nth call kills the process with SIGKILL, then starts
  tools/build_tfrecords.py with the same arguments. With --num_workers=1 the converter does all its
  work in its own process, so the patches reach every stage;
* at random moments, by a wall-clock timer (seeded, so the moments are reproducible), with one
  worker and with two (killing the parent alone, as `kill -9 PID` does, or its whole process group).

After every kill: nothing half-written sits under a final shard name (each one parses fully and
equals the uninterrupted run's), no half-written manifest.json, nothing written outside
--output_dir, and the input untouched. After the final completing run (the plain command): every
shard and manifest.json are byte-identical to an uninterrupted run's (the manifest holds no timings
or timestamps, so it is compared whole), and every input image is in exactly one record or in the
skipped report.

Two more cover bugs these tests found: a parent killed alone while its workers write (the workers
now die with it), and an image changed between a kill and the rerun (its check is discarded, so the
next run converts the new bytes). An unreadable image and an unreadable class folder (mode 000,
enforced even when the tests run as root) are reported.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import records
from tests import corpus
from tests.test_convert import TOOL, check_every_image_accounted, read_records

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
SHARD_NAME = re.compile(r"^(train|validation)-\d{5}-of-\d{5}$")
MANIFEST = records.MANIFEST_NAME
OUTPUT_FILES = (MANIFEST, "labels.txt")  # written whole, beside the shards, by every run
LISTED = "Found the extracted layout"  # the converter's first log line after listing the input
TIMEOUT = 120

# Runs tools/build_tfrecords.py (argv[1]) with argv[2:], after patching one function so that its
# Nth call (FAULT_AT=event:N) kills this process with SIGKILL at the moment the event names.
WRAPPER = r'''
import json, os, re, runpy, signal, sys, time

tool = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(tool))))
event_wanted, _, nth = os.environ["FAULT_AT"].partition(":")
counts = {}


def fires(event):
    counts[event] = counts.get(event, 0) + 1
    return event == event_wanted and counts[event] == int(nth)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


from alexnet_tf.convert import checks, layouts, main

real_scan = layouts._scan_folder


def scan_folder(folder, *args, **kwargs):  # "list": one call per folder listed
    if fires("list"):
        die()
    yield from real_scan(folder, *args, **kwargs)


layouts._scan_folder = scan_folder
real_prepare = checks.prepare_image


def prepare_image(data, max_pixels):  # "check": one call per image checked in pass 1
    if fires("check"):
        die()
    return real_prepare(data, max_pixels)


checks.prepare_image = prepare_image


record_delay = float(os.environ.get("RECORD_DELAY", "0"))


def killing_after_nth_record(real_writer):  # "record": a record written and flushed, then the kill
    class Writer(real_writer):
        def write(self, record):
            time.sleep(record_delay)  # RECORD_DELAY: seconds per record, to stand in for big shards
            super().write(record)
            if fires("record"):
                self.flush()
                die()

    return Writer


try:  # the converter's own TFRecord writer, used where TensorFlow is not loaded
    from alexnet_tf.convert import tfrecord
    tfrecord.RecordWriter = killing_after_nth_record(tfrecord.RecordWriter)
except ImportError:
    tfrecord = None
if tfrecord is None or "tensorflow" in sys.modules:
    import tensorflow as tf
    tf.io.TFRecordWriter = killing_after_nth_record(tf.io.TFRecordWriter)

real_replace = os.replace
shard_name = re.compile(r"^(train|validation)-\d{5}-of-\d{5}$")


def replace(src, dst, *args, **kwargs):  # an atomic rename done, then maybe the kill
    name = os.path.basename(os.fsdecode(dst))
    if name == "labels.txt" and fires("labels"):  # labels.txt written under its temporary name only
        die()
    real_replace(src, dst, *args, **kwargs)
    if shard_name.match(name) and fires("shard_renamed"):  # a shard in place, its status not yet saved
        die()
    if name.endswith(".json") and shard_name.match(name[:-5]) and fires("status_saved"):  # between two shards
        die()
    if name == "manifest.json" and fires("manifest_renamed"):  # the manifest in place, cleanup not done
        die()


os.replace = replace
real_dump = json.dump


def dump(payload, handle, **kwargs):  # "manifest": half its text written and synced, then the kill
    if isinstance(payload, dict) and "splits" in payload and "skipped" in payload and fires("manifest"):
        text = json.dumps(payload, **kwargs)
        handle.write(text[: len(text) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        die()
    return real_dump(payload, handle, **kwargs)


json.dump = dump
runpy.run_path(tool, run_name="__main__")
'''


def tree_digest(root) -> dict[str, tuple[str, int]]:
    """Every file under `root` with its sha256 and mode: to show the input is never touched."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = (hashlib.sha256(handle.read()).hexdigest(), os.stat(path).st_mode)
    return found


class Run:
    """A converter process whose stderr is read as it comes, so a test can act on a log line."""

    def __init__(self, command: list[str], cwd, new_session: bool = False):
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, start_new_session=new_session)
        self.lines: list[str] = []
        self.listed = threading.Event()
        self.listed_at = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            if LISTED in line and not self.listed.is_set():
                self.listed_at = time.monotonic()
                self.listed.set()

    def wait(self) -> int:
        try:
            code = self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        self.ended = time.monotonic()
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies waiting for init to reap them do not count)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except ProcessLookupError:
            return []
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(int(entry))
    return members


def wait_for_process_group(pgid: int, timeout: float = 30) -> None:
    """Waits for every process of a killed run's group (orphaned workers) to end; kills them after `timeout`."""
    deadline = time.monotonic() + timeout
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _live_members(pgid):
        os.killpg(pgid, signal.SIGKILL)


class Conversion:
    """A raw corpus, the converter's arguments, and the output of an uninterrupted run of the command."""

    def __init__(self, root, train, validation, train_shards: int, validation_shards: int):
        self.root, self.train, self.validation = root, train, validation
        self.raw = root / "raw"
        corpus.write_extracted(str(self.raw), train, validation)
        self.input_digest = tree_digest(self.raw)
        self.options = [f"--train_shards={train_shards}", f"--validation_shards={validation_shards}"]
        self.wrapper = root / "kill_at.py"
        self.wrapper.write_text(WRAPPER)
        (root / "cwd").mkdir()
        self.reference_dir = root / "reference"
        self.uninterrupted = Run(self.command(self.reference_dir), cwd=root / "cwd")
        assert self.uninterrupted.wait() == 0, self.uninterrupted.stderr[-3000:]
        names = [name for name in os.listdir(self.reference_dir) if SHARD_NAME.match(name) or name in OUTPUT_FILES]
        self.reference = {name: (self.reference_dir / name).read_bytes() for name in names}
        self.records = {shard["shard"]: shard["records"] for entry in json.loads(self.reference[MANIFEST])["splits"].values()
                        for shard in entry["shards"]}

    def args(self, output_dir, num_workers: int = 1) -> list[str]:
        return [f"--input_dir={self.raw}", f"--output_dir={output_dir}", *self.options, f"--num_workers={num_workers}"]

    def command(self, output_dir, num_workers: int = 1) -> list[str]:
        return [sys.executable, TOOL, *self.args(output_dir, num_workers)]

    def run(self, output_dir, cwd) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(output_dir), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)

    def kill_at(self, output_dir, cwd, event: str, nth: int) -> None:
        """The same command through the wrapper, killed by SIGKILL at the Nth `event`."""
        result = subprocess.run([sys.executable, str(self.wrapper), TOOL, *self.args(output_dir)], cwd=cwd,
                                env={**ENV, "FAULT_AT": f"{event}:{nth}"}, capture_output=True, text=True,
                                timeout=TIMEOUT)
        assert result.returncode == -signal.SIGKILL, (
            f"the kill at {event} #{nth} never came (exit {result.returncode}):\n{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """31 images of 48-120 pixels with every quirk: 21 train records in 4 shards (5, 5, 5, 6), 6
    validation records in 2; checked in chunks of 16 (train 16 + 9, validation 6)."""
    return Conversion(tmp_path_factory.mktemp("faults_small"), corpus.make_images(), corpus.validation_images(),
                      train_shards=4, validation_shards=2)


@pytest.fixture
def work(tmp_path):
    """A folder holding only the output folder and the converter's working folder."""
    (tmp_path / "cwd").mkdir()
    return tmp_path


def count_records(path) -> int:
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(str(path)):
            count += 1
    except tf.errors.DataLossError as error:
        pytest.fail(f"{os.path.basename(path)} is under its final name but does not parse: {error.message}")
    return count


def check_after_kill(conv: Conversion, work) -> list[str]:
    """What must hold whenever the converter dies; returns the shards under their final names."""
    out = work / "out"
    assert set(os.listdir(work)) <= {"cwd", "out"}, f"written outside --output_dir: {os.listdir(work)}"
    assert os.listdir(work / "cwd") == [], "written into the working folder"
    assert tree_digest(conv.raw) == conv.input_digest, "the input changed"
    if not out.exists():
        return []
    final = sorted(name for name in os.listdir(out) if SHARD_NAME.match(name))
    for name in final:
        assert count_records(out / name) == conv.records[name], f"{name} is incomplete"
        assert (out / name).read_bytes() == conv.reference[name], f"{name} differs from the uninterrupted run's"
    for name in OUTPUT_FILES:
        if (out / name).exists():
            assert (out / name).read_bytes() == conv.reference[name], f"{name} is not the uninterrupted run's"
    stray = [name for name in os.listdir(out) if not (SHARD_NAME.match(name) or name.startswith((".", *OUTPUT_FILES)))]
    assert stray == [], f"unexpected files in --output_dir: {stray}"
    return final


def check_final(conv: Conversion, work, result: subprocess.CompletedProcess) -> None:
    """The completing run: byte-identical to the uninterrupted run, every image accounted for."""
    out = work / "out"
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    produced = {name: (out / name).read_bytes() for name in os.listdir(out) if SHARD_NAME.match(name) or name in OUTPUT_FILES}
    assert sorted(produced) == sorted(conv.reference)
    for name, data in conv.reference.items():
        assert produced[name] == data, f"{name} differs from the uninterrupted run's"
    assert sorted(os.listdir(out)) == sorted(os.listdir(conv.reference_dir))  # no .incomplete/, no *.tmp left
    manifest = json.loads(produced[MANIFEST])
    check_every_image_accounted(str(out), manifest, conv.train, conv.validation)
    assert len(read_records(str(out), "train")) + len(read_records(str(out), "validation")) == sum(
        entry["images"] for entry in manifest["splits"].values())
    check_after_kill(conv, work)


TRAIN = [f"train-{i:05d}-of-00004" for i in range(4)]
VALIDATION = [f"validation-{i:05d}-of-00002" for i in range(2)]


def state_after_listing(out, conv):  # (a) listing: nothing may be written yet
    assert not out.exists()


def state_in_checks(out, conv):  # (b) pass 1, mid second chunk: the first chunk's verdicts saved, nothing planned
    assert len(glob.glob(str(out / ".checks" / "*.json"))) == 1
    assert not glob.glob(str(out / "*-of-*")) and not glob.glob(str(out / ".shards" / "*"))


def state_mid_shard(out, conv):  # (c) the 3rd record of train-00001 flushed under .incomplete/, not under its name
    assert sorted(glob.glob(str(out / "*-of-*"))) == [str(out / TRAIN[0])]
    partial = (out / ".incomplete" / TRAIN[1]).read_bytes()
    assert 0 < len(partial) < len(conv.reference[TRAIN[1]])
    assert conv.reference[TRAIN[1]].startswith(partial)


def state_renamed_not_recorded(out, conv):  # (d) train-00001 renamed into place, its status not saved
    assert sorted(glob.glob(str(out / "*-of-*"))) == [str(out / name) for name in TRAIN[:2]]
    assert sorted(os.listdir(out / ".shards")) == [TRAIN[0] + ".json"]


def state_between_shards(out, conv):  # (d) train-00000..00002 complete and recorded, the rest not started
    assert sorted(glob.glob(str(out / "*-of-*"))) == [str(out / name) for name in TRAIN[:3]]
    assert sorted(os.listdir(out / ".shards")) == [name + ".json" for name in TRAIN[:3]]
    assert not os.listdir(out / ".incomplete")


def state_in_manifest(out, conv):  # (e) every shard in place, manifest.json half written under another name
    assert sorted(glob.glob(str(out / "*-of-*"))) == [str(out / name) for name in TRAIN + VALIDATION]
    assert not (out / MANIFEST).exists()
    half = glob.glob(str(out / (MANIFEST + "*")))
    assert len(half) == 1, half
    written = open(half[0], "rb").read()
    assert 0 < len(written) < len(conv.reference[MANIFEST]) and conv.reference[MANIFEST].startswith(written)


def state_in_labels(out, conv):  # (e) every shard in place, labels.txt whole but not yet renamed
    assert sorted(glob.glob(str(out / "*-of-*"))) == [str(out / name) for name in TRAIN + VALIDATION]
    assert not (out / "labels.txt").exists() and not (out / MANIFEST).exists()


def state_after_manifest(out, conv):  # (e) manifest.json in place, the run's cleanup not done
    assert (out / MANIFEST).read_bytes() == conv.reference[MANIFEST]


STAGES = {
    "a_listing": ("list", 3, state_after_listing),
    "b_checking": ("check", 20, state_in_checks),
    "c_mid_shard": ("record", 8, state_mid_shard),
    "d_shard_renamed_before_its_status": ("shard_renamed", 2, state_renamed_not_recorded),
    "d_between_shards": ("status_saved", 3, state_between_shards),
    "e_writing_labels": ("labels", 1, state_in_labels),
    "e_writing_manifest": ("manifest", 1, state_in_manifest),
    "e_manifest_renamed": ("manifest_renamed", 1, state_after_manifest),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_sigkill_at_a_stage_then_the_same_command_finishes_identically(small, work, stage):
    event, nth, check_state = STAGES[stage]
    small.kill_at(work / "out", work / "cwd", event, nth)
    check_after_kill(small, work)
    check_state(work / "out", small)
    result = small.run(work / "out", work / "cwd")
    check_final(small, work, result)
    if stage.startswith("e_"):
        assert "Resuming: 6 of 6 shards" in result.stderr, result.stderr[-3000:]


def test_sigkill_at_each_stage_in_a_row_then_the_same_command_finishes_identically(small, work):
    """Five kills in a row on one --output_dir, one per stage, each run resuming from the one before."""
    out = work / "out"
    small.kill_at(out, work / "cwd", "list", 3)  # (a)
    assert check_after_kill(small, work) == [] and not out.exists()
    small.kill_at(out, work / "cwd", "check", 20)  # (b) the first chunk of 16 checked and saved
    assert check_after_kill(small, work) == []
    state_in_checks(out, small)
    small.kill_at(out, work / "cwd", "record", 8)  # (c) pass 1 finished, then 3 records into train-00001
    assert check_after_kill(small, work) == TRAIN[:1]
    state_mid_shard(out, small)
    small.kill_at(out, work / "cwd", "shard_renamed", 2)  # (d) train-00000 kept; 00001 and 00002 renamed
    assert check_after_kill(small, work) == TRAIN[:3]
    assert sorted(os.listdir(out / ".shards")) == [name + ".json" for name in TRAIN[:2]]
    small.kill_at(out, work / "cwd", "manifest", 1)  # (e) 00002 rewritten, the rest written, manifest half
    assert check_after_kill(small, work) == TRAIN + VALIDATION
    state_in_manifest(out, small)
    result = small.run(out, work / "cwd")
    assert "Resuming: 3 of 3 check chunks" in result.stderr and "Resuming: 6 of 6 shards" in result.stderr, result.stderr
    check_final(small, work, result)


@pytest.mark.parametrize("workers, kill", [(1, "process"), (2, "parent only"), (2, "process group")])
def test_sigkill_at_random_moments_then_the_same_command_finishes_identically(tmp_path_factory, work, workers, kill):
    """Six kills by a seeded timer, in a row on one --output_dir, then the plain command.

    The moments are fractions of the time the run has left, counted from the process start or from
    the end of listing (most of a small run is interpreter start-up). A rerun only converts the
    shards not yet in place, so its time left is the uninterrupted run's conversion time scaled by
    the share of shards missing. With two workers, killing the parent alone leaves its workers to
    finish or die on their own while the next run starts."""
    conv = Conversion(tmp_path_factory.mktemp("faults_timed"), corpus.make_images(seed=3, per_class=60),
                      corpus.validation_images(per_class=4), train_shards=12, validation_shards=2)
    starting = conv.uninterrupted.listed_at - conv.uninterrupted.started  # interpreter, listing
    converting = conv.uninterrupted.ended - conv.uninterrupted.listed_at  # checking, writing, manifest
    total_shards = len(conv.records)
    in_place = 0
    rng = random.Random(f"{workers} {kill}")
    moments = [("listed", rng.uniform(0.05, 0.5)), ("started", rng.uniform(0.3, 0.9)), ("listed", rng.uniform(0.0, 0.3)),
               ("listed", rng.uniform(0.1, 0.5)), ("started", rng.uniform(0.4, 0.9)), ("listed", rng.uniform(0.0, 0.3))]
    outcomes = []
    for origin, fraction in moments:
        left = converting * max(total_shards - in_place, 1) / total_shards
        run = Run(conv.command(work / "out", workers), cwd=work / "cwd", new_session=True)
        if origin == "listed":
            deadline = time.monotonic() + TIMEOUT
            while not run.listed.wait(0.001) and run.process.poll() is None and time.monotonic() < deadline:
                pass
            assert run.listed.is_set(), run.stderr[-3000:]
            time.sleep(fraction * left)
        else:
            time.sleep(fraction * (starting + left))
        if kill == "process group":
            try:
                os.killpg(run.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            run.process.send_signal(signal.SIGKILL)
        code = run.wait()
        assert code in (0, -signal.SIGKILL), run.stderr[-3000:]
        # Orphaned workers finish their shard and exit; the rerun starts after them (one that starts
        # at once is test_kill_of_the_parent_alone_while_workers_write_big_shards_then_an_immediate_rerun).
        wait_for_process_group(run.process.pid)
        final = check_after_kill(conv, work)
        in_place = len(final)
        outcomes.append((origin, round(fraction, 2), "killed" if code else "finished first", in_place))
    print(f"timed kills ({workers} workers, {kill}): (from, fraction, outcome, final shards after it)", outcomes)
    assert sum(outcome[2] == "killed" for outcome in outcomes) >= 3, outcomes
    check_final(conv, work, conv.run(work / "out", work / "cwd"))


def test_kill_of_the_parent_alone_while_workers_write_big_shards_then_an_immediate_rerun(tmp_path_factory, work):
    """`kill -9 PID` with --num_workers=2 mid-shard, and the same command at once, while the orphaned
    workers still write. Records are slowed to 0.2 s each (the wrapper, inherited by forked workers)
    to stand in for ImageNet's 100 MB shards. Nothing may ever be seen incomplete under a final name."""
    conv = Conversion(tmp_path_factory.mktemp("faults_orphans"), corpus.make_images(seed=5, per_class=10, quirks=False),
                      [], train_shards=3, validation_shards=1)
    out = work / "out"
    env = {**ENV, "FAULT_AT": "never:0", "RECORD_DELAY": "0.2"}
    command = [sys.executable, str(conv.wrapper), TOOL, *conv.args(out, num_workers=2)]
    first = subprocess.Popen(command, cwd=work / "cwd", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    second = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(glob.glob(str(out / ".incomplete" / "train-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # both workers a few records into their shards
        first.send_signal(signal.SIGKILL)  # the parent alone, as `kill -9 PID` does
        first.wait()
        second = subprocess.Popen(command, cwd=work / "cwd", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        seen_incomplete = set()
        while second.poll() is None:
            for path in glob.glob(str(out / "train-*")):
                try:
                    data = open(path, "rb").read()
                except FileNotFoundError:
                    continue
                if data != conv.reference[os.path.basename(path)]:
                    seen_incomplete.add((os.path.basename(path), len(data)))
            time.sleep(0.01)
        stderr = second.stderr.read()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        wait_for_process_group(first.pid)  # the orphaned workers
    assert not seen_incomplete, f"shards seen incomplete under their final names: {sorted(seen_incomplete)}"
    assert second.returncode == 0, stderr[-3000:]
    check_final(conv, work, conv.run(out, work / "cwd"))


def test_an_image_changed_after_a_kill_is_converted_by_running_the_same_command_again(tmp_path_factory, work):
    """Killed in pass 2, an image is replaced (a re-download), and the same command is run again, as
    the converter's own message advises, twice: the run must finish with the new image."""
    train = corpus.make_images(seed=6, per_class=4, quirks=False)
    conv = Conversion(tmp_path_factory.mktemp("faults_changed"), train, [], train_shards=3, validation_shards=1)
    out = work / "out"
    conv.kill_at(out, work / "cwd", "record", 2)
    changed = train[5]
    changed.data = corpus.good_jpeg(np.random.default_rng(99), 64, 48)
    (conv.raw / "train" / changed.synset / changed.filename).write_bytes(changed.data)
    results = [conv.run(out, work / "cwd") for _ in range(2)]
    assert results[-1].returncode == 0, "\n".join(result.stderr[-600:] for result in results)
    rows = {row[records.FILENAME].decode(): row for row in read_records(str(out), "train")}
    assert rows[changed.filename][records.ENCODED] == changed.data
    assert sorted(rows) == sorted(image.filename for image in train)


_PROBE = """
import sys
import numpy, PIL
try:
    open(sys.argv[1], "rb").read()
except PermissionError:
    sys.exit(0)
sys.exit(3)
"""


def _unprivileged() -> tuple[list[str], dict, str] | None:
    """(command prefix, subprocess arguments, description) under which mode 000 really stops reads.

    Not root: nothing to do. Root: root without the capabilities that override file modes
    (setpriv; the interpreter and the repository stay reachable wherever they are), else the user
    nobody (65534). Each is tried on a mode 000 file first; None when neither stops the read.
    """
    if os.geteuid() != 0:
        return [], {}, f"uid {os.geteuid()}"
    caps = "-dac_override,-dac_read_search"
    candidates = []
    if shutil.which("setpriv"):
        candidates.append(([shutil.which("setpriv"), f"--inh-caps={caps}", f"--bounding-set={caps}"], {},
                           "root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv)"))
    candidates.append(([], {"user": 65534, "group": 65534, "extra_groups": []}, "uid/gid 65534 (nobody)"))
    handle, locked = tempfile.mkstemp(prefix="alexnet_tf_probe_")
    os.close(handle)
    os.chmod(locked, 0o000)
    try:
        for prefix, kwargs, description in candidates:
            try:
                probe = subprocess.run([*prefix, sys.executable, "-c", _PROBE, locked], cwd="/", env=ENV,
                                       capture_output=True, timeout=60, **kwargs)
            except (OSError, subprocess.SubprocessError):
                continue
            if probe.returncode == 0:
                return prefix, kwargs, description
    finally:
        os.remove(locked)
    return None


def test_unreadable_image_and_folder_are_reported_and_the_rest_converted():
    """An image with mode 000 is skipped with its reason; a class folder with mode 000 is reported."""
    unprivileged = _unprivileged()
    if unprivileged is None:
        pytest.skip("running as root, and neither setpriv (dropping CAP_DAC_OVERRIDE) nor uid 65534 can run "
                    f"{sys.executable} with mode 000 enforced: chmod 000 would not stop the converter's reads")
    prefix, as_user, who = unprivileged
    # Not under pytest's tmp_path: as root that sits in a 0700 folder that nobody (65534) cannot enter.
    base = tempfile.mkdtemp(prefix="alexnet_tf_unreadable_")
    locked_path = hidden_dir = None
    try:
        os.chmod(base, 0o755)
        rng = np.random.default_rng(11)
        good = [corpus.RawImage(corpus.CLASSES[i % 2], f"{corpus.CLASSES[i % 2]}_{i}.JPEG",
                                corpus.good_jpeg(rng, 64, 48), corpus.STORED) for i in range(6)]
        locked = corpus.RawImage(corpus.CLASSES[0], f"{corpus.CLASSES[0]}_locked.JPEG", corpus.good_jpeg(rng, 64, 48),
                                 corpus.SKIPPED, "Permission denied")
        hidden = [corpus.RawImage(corpus.CLASSES[2], f"{corpus.CLASSES[2]}_{i}.JPEG", corpus.good_jpeg(rng, 64, 48),
                                  corpus.SKIPPED) for i in range(2)]
        raw, out = os.path.join(base, "raw"), os.path.join(base, "out")
        corpus.write_extracted(raw, good + [locked] + hidden, [])
        locked_path = os.path.join(raw, "train", locked.synset, locked.filename)
        hidden_dir = os.path.join(raw, "train", corpus.CLASSES[2])
        os.chmod(locked_path, 0o000)
        os.chmod(hidden_dir, 0o000)
        home = os.path.join(base, "home")
        for folder in (out, home):
            os.makedirs(folder)
            if as_user:
                os.chown(folder, 65534, 65534)
        env = {**ENV, "HOME": home, "MPLCONFIGDIR": home}
        command = [*prefix, sys.executable, TOOL, f"--input_dir={raw}", f"--output_dir={out}", "--train_shards=2",
                   "--num_workers=1"]
        result = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=TIMEOUT, **as_user)
        assert result.returncode == 0, f"{' '.join(command)} as {who} exited {result.returncode}:\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr

        with open(os.path.join(out, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
        reasons = {entry["source"]: entry["reason"] for entry in manifest["skipped"]}
        assert "Permission denied" in reasons.get(locked_path, ""), manifest["skipped"]
        assert "unreadable" in reasons[locked_path]
        # The folder's images cannot even be listed: the report names the folder.
        assert "unreadable" in reasons.get(hidden_dir, "") and "Permission denied" in reasons[hidden_dir], manifest["skipped"]
        written = sorted(row[records.FILENAME].decode() for row in read_records(out, "train"))
        assert written == sorted(image.filename for image in good)
        assert manifest["splits"]["train"]["images"] == len(good)
        assert manifest["splits"]["train"]["skipped"] == 1
    finally:
        for path in (hidden_dir, locked_path):
            if path:
                os.chmod(path, 0o755)
        shutil.rmtree(base, ignore_errors=True)
