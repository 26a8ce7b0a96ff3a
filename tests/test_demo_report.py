"""The demo's closing lines (python -m alexnet_tf.demo.report): what it learned, read back from
the run's own files, what it does not know, and where everything went."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_report(work_dir: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet_tf.demo.report",
                           f"--work_dir={work_dir}"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def fake_demo_run(work) -> None:
    """The files the demo's steps leave, with the figures the report must restate."""
    (work / "model").mkdir(parents=True)
    (work / "records").mkdir()
    (work / "export" / "1").mkdir(parents=True)
    summary = {"epochs_completed": 10,
               "validation": {"top1_accuracy": 0.8459999, "top5_accuracy": 0.9680001}}
    (work / "model" / "summary.json").write_text(json.dumps(summary))
    manifest = {"splits": {"train": {"images": 3000, "num_classes": 10},
                           "validation": {"images": 500, "num_classes": 10}}}
    (work / "records" / "manifest.json").write_text(json.dumps(manifest))


def test_last_lines_restate_validation_accuracy_what_it_knows_and_where_things_went(tmp_path):
    work = tmp_path / "demo"
    fake_demo_run(work)
    result = run_report(str(work))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert (f"validation top-1 84.6%, top-5 96.8% on 500 held-out drawings of 10 classes "
            f"(chance 10%), after 10 epochs") in text
    for path in (work / "raw", work / "records", work / "model" / "model.keras",
                 work / "export" / "1"):
        assert str(path) in text
    lines = text.strip().splitlines()
    tail = " ".join(lines[-4:])
    assert "drawings, not photographs" in tail
    assert "configs/imagenette.cfg" in tail and "Your own images" in tail


def test_a_run_without_its_summary_is_one_line_naming_the_file(tmp_path):
    work = tmp_path / "demo"
    fake_demo_run(work)
    os.remove(work / "model" / "summary.json")
    result = run_report(str(work))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"demo_report: {work / 'model' / 'summary.json'}: no such file (did training finish?)"]
