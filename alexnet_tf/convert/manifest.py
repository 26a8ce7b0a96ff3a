"""`OUT/manifest.json`: what the converter found and wrote, and `--verify` to check it later.

The manifest is assembled from the per-shard status files, never from counters of the current
run, so a run resumed after a crash writes exactly the manifest an uninterrupted run would.
Timings are logged, not stored, for the same reason.
"""

from __future__ import annotations

import collections
import os
import re

from alexnet_tf import __version__, imagenet, labels
from alexnet_tf.convert import progress
from alexnet_tf.data import records
from alexnet_tf.convert.layouts import Inventory
from alexnet_tf.convert.shards import ShardTask, sha256_and_size

MANIFEST_NAME = records.MANIFEST_NAME
# What any converter names a shard: SPLIT-00000-of-01024 (ours, TF-slim's, the TPU scripts').
_SHARD_LIKE = re.compile(r"^[A-Za-z0-9_]+-\d+-of-\d+$")


def build_manifest(
    inventory: Inventory, tasks: list[ShardTask], statuses: dict[str, dict], skipped_by_split: dict[str, list[dict]],
    input_dir: str, options: dict,
) -> dict:
    splits = {}
    skipped = [{"source": r.origin, "reason": r.reason} for r in inventory.rejected]
    repaired = []
    for split in records.SPLITS:
        split_tasks = [task for task in tasks if task.split == split]
        if not split_tasks:
            continue
        classes: collections.Counter = collections.Counter()
        split_repaired = [{"source": image.source.origin, "repair": image.repair}
                          for task in split_tasks for image in task.images if image.repair]
        split_repaired.sort(key=lambda entry: entry["source"])
        for task in split_tasks:
            classes.update(statuses[task.name]["classes"])
        splits[split] = {
            "images": sum(classes.values()),
            "listed": len(inventory.sources.get(split, ())),
            "repaired": len(split_repaired),
            "skipped": len(skipped_by_split.get(split, ())),
            "num_classes": len(classes),
            "classes": dict(sorted(classes.items())),
            "shards": [{key: statuses[task.name][key] for key in ("shard", "records", "bytes", "sha256")}
                       for task in split_tasks],
        }
        repaired.extend(split_repaired)
        skipped.extend(skipped_by_split.get(split, ()))
    present = sorted({synset for entry in splits.values() for synset in entry["classes"]})
    offset = options.get("label_offset", 0)
    classes = [{"label": index + offset, "name": name,
                **{split: entry["classes"].get(name, 0) for split, entry in splits.items()}}
               for index, name in enumerate(inventory.class_names)]
    return {
        "created_by": f"alexnet_tf {__version__} tools/build_tfrecords.py",
        "input_dir": os.path.abspath(input_dir),
        "layout": inventory.layout,
        "options": options,
        "splits": splits,
        "missing_splits": [split for split in records.SPLITS if split not in splits],
        "class_text": {synset: inventory.class_text.get(synset, synset) for synset in present},
        # labels.txt beside the shards: line i is the class of label i + label_offset.
        "labels_file": labels.LABELS_FILENAME,
        "num_classes": len(inventory.class_names),
        "classes": classes,
        "notes": inventory.notes,
        "repaired": repaired,
        "skipped": skipped,
        "ignored": inventory.ignored,
    }


def write_manifest(output_dir: str, manifest: dict) -> str:
    path = os.path.join(output_dir, MANIFEST_NAME)
    progress.write_json_atomically(path, manifest)
    return path


def read_manifest(output_dir: str) -> dict:
    from alexnet_tf.data import records  # TensorFlow: only --verify needs it

    manifest = records.read_manifest(output_dir)
    if manifest is None:
        raise ValueError(f"{os.path.join(output_dir, MANIFEST_NAME)} does not exist: run the conversion first")
    return manifest


def _size_promise_broken(height: int, width: int, options: dict) -> str | None:
    """Why a stored height x width breaks what --resize_shorter_side / --center_crop promised."""
    shorter_side = options.get("resize_shorter_side")
    if shorter_side is not None and min(height, width) > shorter_side:
        return f"is {height}x{width}, over --resize_shorter_side={shorter_side}"
    if options.get("center_crop") and height != width:
        return f"is {height}x{width}, not square although --center_crop"
    return None


def _check_records(path: str, label_offset: int, num_classes: int,
                   options: dict | None = None) -> tuple[int, list[str]]:
    """Counts the records of one shard and checks each decodes to height x width x 3."""
    import tensorflow as tf  # only --verify needs TensorFlow; converting never imports it

    from alexnet_tf.data import records

    problems = []

    def decode(serialized):
        features = tf.io.parse_single_example(serialized, records.FULL_PARSE_SPEC)
        shape = tf.shape(tf.io.decode_jpeg(features[records.ENCODED], channels=3))
        return (shape, features[records.HEIGHT], features[records.WIDTH],
                features[records.LABEL], features[records.FILENAME])

    dataset = tf.data.TFRecordDataset(path).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    count = 0
    iterator = iter(dataset)
    while True:
        try:
            shape, height, width, label, filename = next(iterator)
        except StopIteration:
            break
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            problems.append(f"{os.path.basename(path)}: record {count + 1} is unreadable: {error.message.splitlines()[0]}")
            break
        count += 1
        name = filename.numpy().decode("utf-8", "backslashreplace")
        if list(shape.numpy()) != [int(height), int(width), 3]:
            problems.append(f"{os.path.basename(path)}: {name} decodes to {list(shape.numpy())}, "
                            f"the record says {int(height)}x{int(width)}x3")
        broken = _size_promise_broken(int(height), int(width), options or {})
        if broken:
            problems.append(f"{os.path.basename(path)}: {name} {broken}")
        if not label_offset <= int(label) < label_offset + num_classes:
            problems.append(f"{os.path.basename(path)}: {name} has label {int(label)}, outside "
                            f"{label_offset}..{label_offset + num_classes - 1}")
    return count, problems


def _shape_problem(manifest) -> str | None:
    """What keeps `manifest` from being one the converter wrote, or None."""
    if not isinstance(manifest, dict):
        return "is not a JSON object"
    missing = [key for key in ("options", "splits") if not isinstance(manifest.get(key), dict)]
    if missing:
        return f"has no {' or '.join(repr(key) for key in missing)}"
    if not isinstance(manifest["options"].get("label_offset"), int):
        return "has no integer options.label_offset"
    for split, entry in manifest["splits"].items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not all(
                isinstance(shard, dict) and {"shard", "records", "bytes", "sha256"} <= set(shard)
                for shard in shards):
            return f"has no list of {split} shards with shard, records, bytes and sha256"
    return None


def unlisted_shards(output_dir: str, manifest: dict) -> list[str]:
    """Files in `output_dir` named like shards of any split that the manifest does not list."""
    listed = {shard["shard"] for entry in manifest["splits"].values() for shard in entry["shards"]}
    return sorted(name for name in os.listdir(output_dir)
                  if _SHARD_LIKE.match(name) and name not in listed)


def verify_output(output_dir: str) -> tuple[int, list[str]]:
    """Reads every shard back; returns (records checked, problems). No problems means intact."""
    manifest = read_manifest(output_dir)
    shape_problem = _shape_problem(manifest)
    if shape_problem:
        raise ValueError(f"{os.path.join(output_dir, MANIFEST_NAME)} {shape_problem}: it is not "
                         "a manifest written by tools/build_tfrecords.py (convert again to "
                         "rewrite it)")
    label_offset = manifest["options"]["label_offset"]
    num_classes = manifest.get("num_classes", imagenet.NUM_CLASSES)  # older manifests: ImageNet
    problems, checked = [], 0
    for split, entry in manifest["splits"].items():
        for shard in entry["shards"]:
            path = os.path.join(output_dir, shard["shard"])
            if not os.path.isfile(path):
                problems.append(f"{shard['shard']}: missing")
                continue
            if (shard["sha256"], shard["bytes"]) != sha256_and_size(path):
                problems.append(f"{shard['shard']}: sha256 does not match the manifest (the file changed or is corrupt)")
            count, record_problems = _check_records(path, label_offset, num_classes,
                                                    manifest["options"])
            checked += count
            problems.extend(record_problems)
            if count != shard["records"]:
                problems.append(f"{shard['shard']}: {count} readable records, the manifest says {shard['records']}")
    for name in unlisted_shards(output_dir, manifest):
        problems.append(f"{name}: named like a shard but not in manifest.json (the trainer and "
                        "evaluate leave it out); remove it, or convert again if it belongs")
    return checked, problems
