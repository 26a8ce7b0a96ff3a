"""benchmarks/malloc_settings.py: the allocator settings both frameworks are timed under.

PyTorch's CPU training speed doubles under them (benchmarks/README.md), so a benchmark that loses
them understates PyTorch and overstates our lead. No TensorFlow here: glibc's behaviour is
watched through mallinfo2.
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
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}


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


# Frees a 64 MiB block and reports whether glibc kept it in the heap: under the settings it
# comes from the heap (no fresh mmap) and stays there (no trim); under glibc's defaults, or
# either variable alone, it is gone (munmap'd or trimmed), which is what PyTorch paid per step.
HEAP_PROBE = """
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.mallinfo2.restype = MallInfo2
    block = libc.malloc(ctypes.c_size_t(64 << 20))
    ctypes.memset(block, 1, 64 << 20)
    libc.free(ctypes.c_void_p(block))
    print("kept" if libc.mallinfo2().arena >= 64 << 20 else "returned", flush=True)
"""


def test_the_settings_keep_a_freed_large_block_in_the_heap_and_the_defaults_do_not(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "malloc_settings", os.path.join(BENCHMARKS, "malloc_settings.py"))
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)

    def probe(env):
        done = run_script(tmp_path, HEAP_PROBE, env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert probe(settings.environment(tuned=True)) == "kept"
    assert probe(settings.environment(tuned=False)) == "returned"
    for name, value in settings.TUNED.items():  # one variable alone is not enough
        assert probe(dict(settings.environment(tuned=False), **{name: value})) == "returned", name
