"""benchmarks/malloc_settings.py: the allocator settings both frameworks are timed under.

PyTorch's CPU training speed doubles under them (benchmarks/README.md), so a benchmark that loses
them, at start or when TensorFlow's from_generator resets the trim threshold, understates PyTorch
and overstates our lead. No TensorFlow here: glibc's behaviour is watched through the heap's end.
"""

import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO_ROOT, "benchmarks")


def run_script(tmp_path, body: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = tmp_path / "probe.py"
    script.write_text(f"import sys\nsys.path.insert(0, {BENCHMARKS!r})\n"
                      + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def environment_without_tuning() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(name, None)
    return env


def test_a_benchmark_started_plainly_reruns_itself_once_under_the_settings(tmp_path):
    done = run_script(tmp_path, """
        import os
        import malloc_settings
        malloc_settings.rerun_tuned()
        print("running with", os.environ["MALLOC_MMAP_THRESHOLD_"],
              os.environ["MALLOC_TRIM_THRESHOLD_"], malloc_settings.in_effect())
    """, environment_without_tuning())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("re-running under") for line in lines) == 1, lines
    assert lines[-1] == f"running with {10**12} {10**12} True", lines


# Frees a 64 MiB block at the top of the heap and reports whether glibc gave it back. Under the
# settings the block comes from the heap (no mmap) and stays there (no trim); TensorFlow's
# from_generator sets M_TRIM_THRESHOLD to 128 KiB, simulated here by the same mallopt call.
TRIM_PROBE = """
    import ctypes
    import malloc_settings
    libc = ctypes.CDLL("libc.so.6")
    libc.sbrk.restype = ctypes.c_void_p
    libc.malloc.restype = ctypes.c_void_p
    libc.mallopt(-1, ctypes.c_int(128 * 1024))  # what from_generator does
    {reassert}
    block = libc.malloc(ctypes.c_size_t(64 << 20))
    grown = libc.sbrk(0)
    libc.free(ctypes.c_void_p(block))
    print("kept" if libc.sbrk(0) == grown else "trimmed", flush=True)
"""


def test_reassert_undoes_the_trim_threshold_tensorflow_sets_for_the_whole_process(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "malloc_settings", os.path.join(BENCHMARKS, "malloc_settings.py"))
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)
    tuned = settings.tuned_environment(environment_without_tuning())

    reasserted = run_script(tmp_path, TRIM_PROBE.format(reassert="malloc_settings.reassert()"),
                            tuned)
    assert reasserted.returncode == 0, reasserted.stderr
    assert reasserted.stdout.strip() == "kept"
    # The probe can tell: without reassert() the same block goes back to the kernel.
    patched = run_script(tmp_path, TRIM_PROBE.format(reassert="pass"), tuned)
    assert patched.returncode == 0, patched.stderr
    assert patched.stdout.strip() == "trimmed"
