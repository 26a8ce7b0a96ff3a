"""The glibc malloc settings both frameworks' CPU benchmarks run under, so neither pays for it.

A training step frees and re-allocates its large activations and gradients every step. Under
glibc's defaults a block above the mmap threshold (dynamic, at most 32 MiB) is a fresh `mmap`
whose pages fault in zero-filled, and freed memory at the heap's top is trimmed back to the
OS, so every step pays page faults again. PyTorch's CPU allocator is plain malloc and pays
this in full; TensorFlow, reusing its buffers, hardly at all. Measured 2026-12-04 (2-core
AVX-512 BF16 EPYC, glibc 2.36, the paper's AlexNet at 227x227, batch 64, bfloat16,
benchmarks/train_throughput.py): PyTorch 38.0 images/s under the defaults, 57.5 with only the
mmap threshold raised, 33.9 with only trimming off, 79.9 with both; Keras 121.6 and 120.9.
PyTorch's CPU performance guide makes the same point with jemalloc or tcmalloc; these two
variables need nothing installed. glibc reads them once, at process start, and a later
mallopt() overrides them: TensorFlow's `Dataset.from_generator` sets M_TRIM_THRESHOLD to
128 KiB for the whole process (its log says "Memory patch applied"), so a benchmark that
times PyTorch under these settings must not use it.
"""

from __future__ import annotations

import os
import sys

# Keep freed memory in the heap (no trimming) and serve big blocks from it (no fresh mmap).
TUNED = {"MALLOC_MMAP_THRESHOLD_": str(10**12), "MALLOC_TRIM_THRESHOLD_": str(10**12)}


def environment(tuned: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) under TUNED, or under glibc's defaults."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in TUNED}
    return dict(env, **TUNED) if tuned else env


def in_effect() -> bool:
    return all(os.environ.get(name) == value for name, value in TUNED.items())


def rerun_tuned() -> None:
    """Replaces this process by the same command under TUNED, unless it already runs so."""
    if in_effect():
        return
    print("re-running under " + " ".join(f"{k}={v}" for k, v in TUNED.items()), flush=True)
    os.execve(sys.executable, [sys.executable] + sys.argv, environment(tuned=True))

