"""Progress shared across worker processes, and the small file helpers both passes use."""

from __future__ import annotations

import json
import os
import time

from absl import logging

# Set in each worker by `init_worker`; the parent polls it to log images/s and the ETA.
_images_done = None


def init_worker(images_done) -> None:
    """Runs once per worker process (and in the parent when it works alone)."""
    global _images_done
    _images_done = images_done


def count_images(count: int) -> None:
    if _images_done is not None:
        with _images_done.get_lock():
            _images_done.value += count


def write_json_atomically(path: str, payload: dict, durable: bool = True) -> None:
    """Readers see the old file or the new one, never half of one.

    `durable` also forces the file to disk before it takes its name. The converter's own
    bookkeeping (check verdicts, shard statuses) skips that: a rerun only trusts such a file if
    it parses and matches the plan's digest, so one lost or emptied by a power cut is just
    redone, and not waiting for the disk once per chunk and per shard keeps the workers busy.
    """
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Logs `stage: done/total images, images/s, ETA` every `interval` seconds."""

    def __init__(self, stage: str, total_images: int, interval: float):
        self.stage = stage
        self.total_images = total_images
        self.interval = interval
        self.start = self.last_report = time.monotonic()

    def maybe_report(self, images_done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_report < self.interval:
            return
        self.last_report = now
        rate = images_done / max(now - self.start, 1e-9)
        eta = format_duration((self.total_images - images_done) / rate) if rate > 0 else "?"
        logging.info("%s: %s/%s images (%.1f%%), %.0f images/s, ETA %s", self.stage, f"{images_done:,}",
                     f"{self.total_images:,}", 100.0 * images_done / max(self.total_images, 1), rate, eta)
