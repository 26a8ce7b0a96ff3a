"""Which shard files a split is read from: exactly the manifest's, when there is one.

A `train-*-of-*` glob also picks up whatever else lies beside the shards (a copy of a shard, an
older conversion with another shard count), and the trainer would read it while taking its step
count from the manifest. So with a manifest the shards it lists are read and nothing else, and
the files left out are named; without one (records from another converter) the glob decides.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

# `python -m alexnet_tf.convert` is tools/build_tfrecords.py, and runs from any folder.
VERIFY_HINT = "python -m alexnet_tf.convert --output_dir={} --verify checks every shard"


class ShardListingError(ValueError):
    """The manifest names shards that are not there, or there are none; the message says which."""


@dataclasses.dataclass(frozen=True)
class ShardListing:
    """The files of one split, and the shard-like files beside them that are not read."""

    split: str
    files: list[str]
    left_out: list[str]
    from_manifest: bool

    def describe_left_out(self) -> str | None:
        """One line naming the files beside the shards that are not read, or None."""
        if not self.left_out:
            return None
        names = ", ".join(os.path.basename(path) for path in self.left_out[:5])
        more = f" and {len(self.left_out) - 5} more" if len(self.left_out) > 5 else ""
        return (f"reading only the {len(self.files)} {self.split} shards manifest.json lists; left out "
                f"{len(self.left_out)} other {self.split}-*-of-* files beside them: {names}{more}")


def manifest_shard_names(manifest: dict, split: str) -> list[str] | None:
    """The shard names the manifest records for `split`, or None if it records no shards at all."""
    splits = manifest.get("splits") if isinstance(manifest, dict) else None
    if not isinstance(splits, dict):
        return None
    entry = splits.get(split)
    if not isinstance(entry, dict):
        return []  # the conversion had no such split: files of that name are not its shards
    if not isinstance(entry.get("shards"), list):
        return None  # a manifest that records counts but not shards (hand-written)
    return [str(shard["shard"]) for shard in entry["shards"] if isinstance(shard, dict)]


def glob_shards(data_dir: str, split: str) -> list[str]:
    return sorted(tf.io.gfile.glob(os.path.join(data_dir, f"{split}-*-of-*")))


def list_shards(data_dir: str, split: str, manifest: dict | None) -> ShardListing:
    """The shards to read for `split`: the manifest's in its order, else every `split-*-of-*`."""
    found = glob_shards(data_dir, split)
    names = manifest_shard_names(manifest or {}, split)
    if names is None:
        return ShardListing(split, found, [], from_manifest=False)
    files = [os.path.join(data_dir, name) for name in names]
    missing = [name for name, path in zip(names, files) if not tf.io.gfile.exists(path)]
    if missing:
        raise ShardListingError(
            f"--data_dir={data_dir}: manifest.json lists {split} shards that are not there: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
            f"({VERIFY_HINT.format(data_dir)})")
    known = {os.path.basename(path) for path in files}
    left_out = [path for path in found if os.path.basename(path) not in known]
    return ShardListing(split, files, left_out, from_manifest=True)

