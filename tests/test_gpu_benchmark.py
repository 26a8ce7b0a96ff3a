"""benchmarks/gpu.sh, the GPU figures script, runs end to end at tiny sizes (--dry-run) on CPU,
so the first session with a GPU only has to run it."""

import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_gpu_benchmark_runs_dry_on_a_cpu_and_prints_every_figure(tmp_path):
    environment = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "benchmarks", "gpu.sh"), "--dry-run",
         f"--work_dir={tmp_path}"],
        cwd=str(tmp_path), env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any("build_dataset(training), 256x256 records" in line for line in lines)
    rows = {tuple(line.split()[:3]): line for line in lines
            if line.strip().startswith(("float32", "mixed_"))}
    assert sorted(rows) == sorted((precision, "XLA", state) for precision in
                                  ("float32", "mixed_float16", "mixed_bfloat16")
                                  for state in ("on", "off")), lines
    trained = rows[("float32", "XLA", "off")]
    assert "images/s" in trained and "MFU" in trained, trained
    assert all(row.endswith("skipped in a dry run") for key, row in rows.items()
               if key != ("float32", "XLA", "off"))
    assert any(line.startswith("Real data, 256x256 records") for line in lines)
    assert lines[-1].startswith("gpu: real data reaches")
