"""tools/demo.sh never deletes what it did not make, and finds DIR where the user stands.

The script's Python is a recorder here (VENV points at a folder whose bin/python logs its
arguments and does nothing), so these tests check the script's own decisions in a second,
without installing or training anything.
"""

from __future__ import annotations

import os
import stat
import subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO_ROOT, "tools", "demo.sh")
MARKER = ".alexnet_tf_demo"


def recording_venv(folder) -> tuple[str, str]:
    """A VENV whose bin/python appends its arguments to a log, one call a line."""
    log = str(folder / "python_calls.log")
    python = folder / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return str(python.parent.parent), log


def run_demo(work_arg: str, cwd: str, venv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", DEMO, work_arg], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, VENV=venv), timeout=60)


def calls(log: str) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as handle:
        return handle.read().splitlines()


def test_a_folder_holding_a_users_file_is_refused_and_left_as_it_was(tmp_path):
    venv, log = recording_venv(tmp_path)
    work = tmp_path / "thesis"
    work.mkdir()
    (work / "chapter1.txt").write_text("three months of work")
    result = run_demo(str(work), cwd=str(tmp_path), venv=venv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (work / "chapter1.txt").read_text() == "three months of work"
    assert os.listdir(work) == ["chapter1.txt"]
    message = result.stderr.strip().splitlines()
    assert len(message) == 1 and str(work) in message[0] and "not empty" in message[0], message
    # Refused before anything slow: no pip, no Python at all.
    assert calls(log) == []


def test_a_file_named_as_the_folder_is_refused(tmp_path):
    venv, log = recording_venv(tmp_path)
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    result = run_demo(str(path), cwd=str(tmp_path), venv=venv)
    assert result.returncode == 2 and path.read_text() == "mine"
    assert str(path) in result.stderr and "not a folder" in result.stderr
    assert calls(log) == []


def test_a_relative_folder_is_resolved_from_where_the_user_stands(tmp_path):
    venv, log = recording_venv(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_demo("my_demo", cwd=str(elsewhere), venv=venv)
    assert result.returncode == 0, result.stdout + result.stderr
    work = elsewhere / "my_demo"
    assert (work / MARKER).is_file()
    assert not os.path.exists(os.path.join(REPO_ROOT, "my_demo"))
    assert any(f"--output_dir={work}/raw" in call for call in calls(log)), calls(log)


def test_an_earlier_demo_run_is_redone_but_a_file_the_user_added_stays(tmp_path):
    venv, _ = recording_venv(tmp_path)
    work = tmp_path / "demo"
    (work / "raw" / "val").mkdir(parents=True)
    (work / "raw" / "val" / "stale.JPEG").write_bytes(b"old run")
    (work / MARKER).write_text("made by tools/demo.sh\n")
    (work / "my_notes.txt").write_text("keep me")
    result = run_demo(str(work), cwd=str(tmp_path), venv=venv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (work / "raw" / "val" / "stale.JPEG").exists()
    assert (work / "my_notes.txt").read_text() == "keep me"


def test_an_empty_folder_is_used_and_marked(tmp_path):
    venv, _ = recording_venv(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    result = run_demo(str(work), cwd=str(tmp_path), venv=venv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / MARKER).is_file()
