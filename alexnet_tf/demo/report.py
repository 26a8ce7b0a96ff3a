"""The demo's closing lines, so a run ends saying what happened:

    python -m alexnet_tf.demo.report --work_dir=demo_run

what the model learned (validation top-1/top-5, read back from the trainer's summary.json and
the converter's manifest.json, not remembered from the log), where each artifact went, and what
the model does not know: it has seen drawn icons only, so real photos need another recipe.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

REAL_PHOTO_ADVICE = (
    "The model knows drawings, not photographs: shown real photos of these classes it is\n"
    "confidently wrong. For real photos: configs/imagenette.cfg trains from scratch (about a\n"
    "thousand photos per class); with fewer, fine-tune imported weights. README.md, sections\n"
    "\"Your own images\" and \"Start from pretrained weights\", has the commands.")


class ReportError(Exception):
    """A file the report reads is missing or unreadable; the message names it."""


def _read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (did training finish?)") from None
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot read it: {error}") from None


def _latest_export(export_base: str) -> str:
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()] \
        if os.path.isdir(export_base) else []
    return os.path.join(export_base, str(max(versions)) if versions else "<version>")


def format_report(work_dir: str) -> str:
    """The closing lines for the demo run in `work_dir`."""
    model_dir = os.path.join(work_dir, "model")
    summary = _read_json(os.path.join(model_dir, "summary.json"))
    manifest = _read_json(os.path.join(work_dir, "records", "manifest.json"))
    validation = summary.get("validation") or {}
    top1, top5 = validation.get("top1_accuracy"), validation.get("top5_accuracy")
    if top1 is None or top5 is None:
        raise ReportError(f"{os.path.join(model_dir, 'summary.json')}: no validation accuracy")
    split = manifest.get("splits", {}).get("validation", {})
    images, classes = split.get("images"), split.get("num_classes")
    export = _latest_export(os.path.join(work_dir, "export"))
    return "\n".join([
        "",
        "Artifacts:",
        f"  raw demo images       {os.path.join(work_dir, 'raw')}",
        f"  TFRecords + manifest  {os.path.join(work_dir, 'records')}  (manifest.json lists "
        "every image written, repaired or skipped)",
        f"  trained model         {os.path.join(model_dir, 'model.keras')}  (summary.json, "
        "history.json, training_curves.png, logs/ for TensorBoard)",
        f"  SavedModel            {export}  (models.config and request.json beside it for "
        "TensorFlow Serving)",
        "",
        f"Learned: validation top-1 {100 * top1:.1f}%, top-5 {100 * top5:.1f}% on {images} "
        f"held-out drawings of {classes} classes (chance {100 / classes:.0f}%), after "
        f"{summary.get('epochs_completed')} epochs.",
        REAL_PHOTO_ADVICE,
    ])


FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}", exitcode=2)
    try:
        print(format_report(os.path.abspath(FLAGS.work_dir)))
    except ReportError as error:
        print(f"demo_report: {error}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    flags.DEFINE_string("work_dir", None, "The folder tools/demo.sh worked in.")
    flags.mark_flag_as_required("work_dir")
    app.run(main)


if __name__ == "__main__":
    run()
