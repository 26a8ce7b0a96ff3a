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
