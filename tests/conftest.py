"""Shared test settings: quiet TF logs, and the `slow` marker.

Tests marked `slow` (kill-and-resume runs, multi-process clusters) take tens of seconds each.
CI runs them all (`bash .ci/run`); `python -m pytest -m "not slow" tests` is the quick loop.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a kill/resume or multi-process test taking tens of seconds (CI runs it)"
    )


# The files that take longest (seconds of one core in a full run, 2026-12-03), run first: with
# `--dist loadfile` each file goes whole to one worker as a worker frees up, and collected in
# name order these came last, so one worker ran test_train.py and test_validation.py alone
# for minutes at the end while the other sat idle.
LONGEST_FIRST = (
    "test_train.py",  # 568
    "test_validation.py",  # 479
    "test_multi_worker.py",  # 396
    "test_import_weights.py",  # 265
    "test_train_faults.py",  # 179
    "test_gpu_benchmark.py",  # 167
    "test_export.py",  # 126
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order stays
