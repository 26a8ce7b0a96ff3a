"""Shared test settings: quiet TF logs and keep tests from fighting over CI's two cores."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
