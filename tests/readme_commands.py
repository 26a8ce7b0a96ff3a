"""The commands README.md shows, read from it, and a user's folder to run them in.

The tests run README's lines as a user pastes them: in a folder that stands for the clone
(configs/ and tools/ are links to the repository's), with the data the lines name made there,
`python` replaced by the interpreter running the tests. Only flags that shrink the work
(image size, epochs) are added after a command, never one that changes what it does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import numpy as np

from tests.record_fixtures import class_colour, synthetic_jpeg

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, "README.md")


def readme_section(heading: str) -> str:
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def section_commands(heading: str, program: str = "python") -> list[list[str]]:
    """The `program ...` lines of the section's first bash block, continuation lines joined
    and comments dropped, as argument lists."""
    block = re.search(r"```bash\n(.*?)```", readme_section(heading), re.S).group(1)
    joined = block.replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [command for command in commands if command and command[0] == program]


def user_folder(root: str) -> str:
    """A folder standing for the user's clone: configs/ and tools/ are the repository's."""
    os.makedirs(root, exist_ok=True)
    for name in ("configs", "tools"):
        os.symlink(os.path.join(REPO_ROOT, name), os.path.join(root, name))
    return root


def write_photos(root: str, classes: tuple[str, ...], per_class: int, seed: int = 0) -> None:
    """`root/<class>/photo <n>.jpg`: noisy images of one colour per class, 80 to 120 pixels."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for number in range(per_class):
            height, width = (int(v) for v in rng.integers(80, 121, size=2))
            jpeg = synthetic_jpeg(rng, class_colour(index, len(classes)), height, width)
            with open(os.path.join(root, name, f"photo {number}.jpg"), "wb") as handle:
                handle.write(jpeg)


def run_command(command: list[str], cwd: str, *extra: str,
                timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs a printed `python ...` command with this interpreter, `extra` flags appended."""
    assert command[0] == "python", command
    return subprocess.run([sys.executable, *command[1:], *extra], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
