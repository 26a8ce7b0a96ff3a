"""Runs a conversion: list -> check every image -> plan -> write the missing shards -> manifest.

Plain functions with no flags, so tests and other code can call them; the command line lives in
`alexnet_tf.convert.cli` (used by tools/build_tfrecords.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import math
import multiprocessing
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence

from absl import logging

from alexnet_tf import labels, run_lock
from alexnet_tf.convert import checks, layouts, manifest, output_folder, progress, shards
from alexnet_tf.data import records
from alexnet_tf.convert.resize import ResizeOptions
from alexnet_tf.convert.images import DEFAULT_MAX_PIXELS

DEFAULT_SHUFFLE_SEED = 12345
_MAX_LOGGED_REJECTIONS = 20
_MAX_CHECK_CHUNK = 1000
_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


class ConversionError(Exception):
    """A problem with the input or output folders that stops the run; the message says which."""


def _check_no_stale_shards(output_dir: str, split: str, num_shards: int) -> None:
    """Refuses to mix shards of another shard count: a `train-*` reader would read both sets."""
    pattern = re.compile(rf"^{split}-\d{{5}}-of-(\d{{5}})$")
    for path in glob.glob(os.path.join(glob.escape(output_dir), f"{split}-*")):
        match = pattern.match(os.path.basename(path))
        if match and int(match.group(1)) != num_shards:
            raise ConversionError(
                f"{output_dir} already holds {split} shards of another count "
                f"({os.path.basename(path)}); remove them or choose another --output_dir"
            )


def _start_method() -> str:
    """"fork" where it is safe and available: a forked worker starts in milliseconds, where a
    spawned one starts a new interpreter and imports Pillow and NumPy again (about 0.2 s of CPU
    each). The converter itself never imports TensorFlow; where something else in this process
    did (a test, a notebook), "spawn", because forking a process with TF's thread pools running
    is unsafe."""
    if "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork"


def _init_worker_process(images_done, parent_pid: int) -> None:
    """Ties a worker's life to the converter's: if the parent is killed (kill -9 of its PID
    alone), the kernel kills the worker too, instead of leaving it to finish a shard and rename
    it over the `.incomplete/` file that the rerun is already writing."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    progress.init_worker(images_done)


class _Workers:
    """A pool of worker processes (or the parent alone when one worker is asked for)."""

    def __init__(self, num_workers: int):
        self.num_workers = num_workers
        self.pool = None
        if num_workers > 1:
            context = multiprocessing.get_context(_start_method())
            self.counter = context.Value("q", 0)
            self.pool = context.Pool(num_workers, initializer=_init_worker_process,
                                     initargs=(self.counter, os.getpid()))
        else:
            self.counter = multiprocessing.Value("q", 0)
            progress.init_worker(self.counter)

    def run(self, stage: str, function: Callable, tasks: Sequence, sizes: Sequence[int], interval: float) -> list:
        """Runs `function` on every task; results in task order. Progress is logged meanwhile."""
        with self.counter.get_lock():
            self.counter.value = 0
        reporter = progress.Reporter(stage, sum(sizes), interval)
        results: dict[int, object] = {}
        if self.pool is None:
            for index, task in enumerate(tasks):
                results[index] = function(task)
                reporter.maybe_report(self.counter.value)
        else:
            pending = self.pool.imap_unordered(_Indexed(function), list(enumerate(tasks)), chunksize=1)
            while len(results) < len(tasks):
                try:
                    index, result = pending.next(timeout=min(interval, 1.0) if interval else 1.0)
                    results[index] = result
                except multiprocessing.TimeoutError:
                    pass
                reporter.maybe_report(self.counter.value)
        if tasks:
            reporter.maybe_report(self.counter.value, force=True)
        return [results[index] for index in range(len(tasks))]

    def close(self, terminate: bool = False) -> None:
        if self.pool is not None:
            self.pool.terminate() if terminate else self.pool.close()
            self.pool.join()


class _Indexed:
    """Picklable wrapper that keeps each result paired with its task's position."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, indexed_task):
        index, task = indexed_task
        return index, self.function(task)


# The trainer refuses records without a validation split unless told --novalidation.
_MISSING_VALIDATION_HINT = (". To hold out a validation split, convert again with "
                            "--validation_fraction=0.1 (class folders) or add the val/ folder; "
                            "or train with --novalidation")


def _log_listing(inventory: layouts.Inventory, input_dir: str) -> None:
    counts = ", ".join(f"{split} {len(sources):,} images" for split, sources in inventory.sources.items())
    logging.info("Found the %s layout in %s: %s", inventory.layout, input_dir, counts or "no images")
    for split in records.SPLITS:
        if split not in inventory.sources:
            logging.warning("No %s split in %s: converting the rest%s", split, input_dir,
                            _MISSING_VALIDATION_HINT if split == "validation" else "")
    for note in inventory.notes:
        logging.warning("%s", note)
    for rejected in inventory.rejected[:_MAX_LOGGED_REJECTIONS]:
        logging.warning("Not converted: %s: %s", rejected.origin, rejected.reason)
    if len(inventory.rejected) > _MAX_LOGGED_REJECTIONS:
        logging.warning("... and %d more not converted; all are listed in manifest.json",
                        len(inventory.rejected) - _MAX_LOGGED_REJECTIONS)


def _prepare_output(output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    incomplete = os.path.join(output_dir, shards.INCOMPLETE_DIR)
    shutil.rmtree(incomplete, ignore_errors=True)  # a killed run's partial shards
    os.makedirs(incomplete)
    os.makedirs(os.path.join(output_dir, shards.STATUS_DIR), exist_ok=True)
    os.makedirs(os.path.join(output_dir, checks.CHECKS_DIR), exist_ok=True)


def _run_resumable(workers: _Workers, stage: str, noun: str, function: Callable, tasks: list, load: Callable,
                   *, key: Callable, size: Callable, interval: float) -> tuple[dict, int]:
    """Results of every task (those an earlier run saved, by `load`, and the rest computed now),
    and how many were computed now."""
    results = {key(task): load(task) for task in tasks}
    pending = [task for task in tasks if results[key(task)] is None]
    if len(pending) < len(tasks):
        logging.info("Resuming: %d of %d %s were done by an earlier run", len(tasks) - len(pending), len(tasks), noun)
    for task, result in zip(pending, workers.run(stage, function, pending, [size(t) for t in pending], interval)):
        results[key(task)] = result
    return results, len(pending)


def _run_checks(workers: _Workers, inventory: layouts.Inventory, output_dir: str, max_pixels: int,
                interval: float) -> dict[str, tuple[list[checks.CheckedImage], list[dict]]]:
    total = sum(len(sources) for sources in inventory.sources.values())
    chunk_size = max(16, min(_MAX_CHECK_CHUNK, math.ceil(total / (8 * workers.num_workers))))
    tasks_by_split = {split: checks.plan_checks(output_dir, split, sources, max_pixels, chunk_size)
                      for split, sources in inventory.sources.items()}
    all_tasks = [task for tasks in tasks_by_split.values() for task in tasks]
    results, _ = _run_resumable(workers, "checking", "check chunks", checks.check_chunk, all_tasks,
                                checks.load_result, key=lambda task: task.path,
                                size=lambda task: len(task.sources), interval=interval)
    checked = {split: checks.collect(tasks, results) for split, tasks in tasks_by_split.items()}
    return checked, all_tasks


def _discard_checks_of(origin: str, check_tasks: list[checks.CheckTask]) -> None:
    """Forgets the saved verdicts of the chunk holding `origin`, so the next run checks it again."""
    for task in check_tasks:
        if any(source.origin == origin for source in task.sources):
            with contextlib.suppress(FileNotFoundError):
                os.remove(task.path)


def convert(input_dir: str, output_dir: str, **options) -> dict:
    """Converts `input_dir` into shards and a manifest in `output_dir`; returns the manifest.

    Holds `output_dir`'s run lock throughout: a second converter on the same folder would
    clear the first one's `.incomplete/` shards under it. Options as in `_convert`.
    """
    with contextlib.ExitStack() as held:
        def lock_output() -> None:
            try:
                held.enter_context(
                    run_lock.RunLock(output_dir, what="converter", flag="--output_dir"))
            except run_lock.FolderInUse as error:
                raise ConversionError(str(error)) from None
            except OSError as error:
                raise ConversionError(output_folder.explain_os_error(output_dir, error)) from None

        return _convert(input_dir, output_dir, lock_output=lock_output, **options)


def _convert(
    input_dir: str,
    output_dir: str,
    *,
    train_shards: int = 1024,
    validation_shards: int = 128,
    num_workers: int = 0,
    label_offset: int = 0,
    layout: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shuffle_seed: int = DEFAULT_SHUFFLE_SEED,
    progress_interval: float = 10.0,
    labels_file: str | None = None,
    validation_fraction: float | None = None,
    lock_output: Callable[[], None] = lambda: None,
    resize: ResizeOptions = ResizeOptions(),
) -> dict:
    """Converts `input_dir` into shards and a manifest in `output_dir`; returns the manifest.

    Safe to rerun after an interruption: checked chunks and complete shards of the same plan
    are kept, and the result is the same as that of an uninterrupted run. `resize` stores the
    paper's downscaled images instead of the originals (see `alexnet_tf.convert.resize`).
    """
    started = time.monotonic()
    if train_shards < 1 or validation_shards < 1:
        raise ConversionError("--train_shards and --validation_shards must be at least 1")
    inventory = layouts.list_images(input_dir, layout, labels_file=labels_file,
                                    validation_fraction=validation_fraction)
    class_names = tuple(inventory.class_names)
    refusal = output_folder.refusal_if_inside_input(input_dir, output_dir, inventory.layout)
    if refusal:
        raise ConversionError(refusal)
    lock_output()  # after the refusals, so a refused --output_dir is left untouched
    _log_listing(inventory, input_dir)
    if not inventory.sources:
        raise ConversionError(f"{input_dir} has no train or validation images to convert")
    shard_counts = {"train": train_shards, "validation": validation_shards}
    for split in inventory.sources:
        _check_no_stale_shards(output_dir, split, shard_counts[split])
    try:
        _prepare_output(output_dir)
    except OSError as error:
        raise ConversionError(output_folder.explain_os_error(output_dir, error)) from None
    marks = {"listing": time.monotonic()}

    workers = _Workers(num_workers or os.cpu_count() or 1)
    try:
        checked, check_tasks = _run_checks(workers, inventory, output_dir, max_pixels,
                                           progress_interval)
        marks["checking"] = time.monotonic()
        tasks = []
        for split, (images, _) in checked.items():
            if len(images) < shard_counts[split]:
                logging.warning("%s: %d images for %d shards; some shards will be empty", split, len(images), shard_counts[split])
            plan = shards.plan_shards(images, shard_counts[split], shuffle=(split == "train"), seed=shuffle_seed)
            for index, shard_images in enumerate(plan):
                class_text = {i.source.synset: inventory.class_text[i.source.synset] for i in shard_images}
                tasks.append(shards.ShardTask(output_dir, split, index, shard_counts[split], shard_images,
                                              class_text, label_offset, max_pixels, class_names,
                                              resize))
        statuses, written_now = _run_resumable(workers, "writing", "shards", shards.write_shard, tasks, shards.load_status,
                                  key=lambda task: task.name, size=lambda task: len(task.images),
                                  interval=progress_interval)
        workers.close()
        marks["writing"] = time.monotonic()
    except KeyboardInterrupt:
        workers.close(terminate=True)
        logging.error("Interrupted; run the same command again to resume where it stopped")
        raise
    except shards.InputChanged as error:
        workers.close(terminate=True)
        _discard_checks_of(error.origin, check_tasks)
        raise ConversionError(f"{error}; run the same command again: it checks that image anew "
                              "and keeps everything else done so far") from None
    except shards.ShardWriteFailed as error:
        workers.close(terminate=True)
        raise ConversionError(str(error)) from None
    except OSError as error:  # e.g. the disk filled up while a check result or status was saved
        workers.close(terminate=True)
        raise ConversionError(f"writing to {output_dir} failed: {error}") from None
    except BaseException:
        workers.close(terminate=True)
        raise

    options = {"train_shards": train_shards, "validation_shards": validation_shards, "label_offset": label_offset,
               "layout": layout, "max_pixels": max_pixels, "shuffle_seed": shuffle_seed,
               "labels_file": labels_file, "validation_fraction": validation_fraction,
               **resize.manifest_entry()}
    skipped = {split: found[1] for split, found in checked.items()}
    result = manifest.build_manifest(inventory, tasks, statuses, skipped, input_dir, options)
    try:
        labels.write_labels(os.path.join(output_dir, labels.LABELS_FILENAME), class_names)
        path = manifest.write_manifest(output_dir, result)
    except OSError as error:
        raise ConversionError(f"writing the manifest in {output_dir} failed: {error}") from None
    shutil.rmtree(os.path.join(output_dir, shards.INCOMPLETE_DIR), ignore_errors=True)

    marks["manifest"] = time.monotonic()
    elapsed = marks["manifest"] - started
    listed = sum(len(sources) for sources in inventory.sources.values())
    stages, previous = [], started
    for stage, mark in marks.items():
        stages.append(f"{stage} {mark - previous:.2f} s")
        previous = mark
    logging.info(
        "Done: %s images written (%s), %d repaired, %d skipped, %d ignored; %.0f images/s over %s "
        "(%s; %d shards written now, %d kept); details in %s",
        f"{sum(entry['images'] for entry in result['splits'].values()):,}",
        ", ".join(f"{split} {entry['images']:,} in {len(entry['shards'])} shards" for split, entry in result["splits"].items()),
        len(result["repaired"]), len(result["skipped"]), len(result["ignored"]),
        listed / max(elapsed, 1e-9), progress.format_duration(elapsed), ", ".join(stages), written_now,
        len(tasks) - written_now, path,
    )
    _fail_if_a_split_lost_every_image(result, skipped)
    return result


def _fail_if_a_split_lost_every_image(result: dict, skipped: dict[str, list[dict]]) -> None:
    """A split that had images and ended with none is a failed conversion, not a finished one."""
    for split, entry in result["splits"].items():
        if entry["listed"] and not entry["images"]:
            reasons = sorted({item["reason"] for item in skipped.get(split, ())})
            example = f" ({reasons[0]}{'; ...' if len(reasons) > 1 else ''})" if reasons else ""
            raise ConversionError(
                f"no {split} image was written: all {entry['listed']:,} listed were skipped"
                f"{example}; the reasons are in manifest.json's skipped list")
