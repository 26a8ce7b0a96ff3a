"""README's troubleshooting names every line TensorFlow prints at start-up on this machine.

Those lines cannot be quieted without hiding real errors (see README, "Troubleshooting"), so
the README must explain each of them; a TensorFlow upgrade that adds one fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# absl's "I0000 00:00:1796152840.450738   31942 port.cc:153] ..." and TF's older
# "2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ..." formats.
LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ |[\d-]+ [\d:.]+: [IWEF] \S*?)([\w.]+\.cc):\d+\]")


def test_each_tensorflow_startup_line_is_explained_in_the_readme():
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
        env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sources = {match.group(1) for line in result.stderr.splitlines() if (match := LOG_LINE.match(line))}
    # TF's CUDA wheel prints cudart_stub.cc's line on every machine without a GPU: none read
    # means LOG_LINE no longer reads TF's format, and the check below would pass on nothing.
    assert sources, f"no start-up line read from:\n{result.stderr}"
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    troubleshooting = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    unexplained = sorted(source for source in sources if source not in troubleshooting)
    assert not unexplained, f"README's troubleshooting does not explain lines from {unexplained}:\n{result.stderr}"


def test_our_commands_print_each_startup_line_once():
    """`import tensorflow` prints the first two lines twice (its profiler plugin carries its
    own absl and CUDA stub); the commands import it through quiet_output, which does not."""
    environment = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    program = ("from alexnet_tf import quiet_output; quiet_output.quiet_tensorflow(); "
               "import tensorflow as tf; tf.config.list_physical_devices()")
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=dict(environment, PYTHONPATH=REPO_ROOT), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sources = [match.group(1) for line in result.stderr.splitlines()
               if (match := LOG_LINE.match(line))]
    assert sources and len(sources) == len(set(sources)), result.stderr
    assert result.stderr.count("All log messages before absl::InitializeLog()") <= 1, result.stderr
