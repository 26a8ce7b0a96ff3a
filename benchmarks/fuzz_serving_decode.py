"""Claim (issue 20): no mutant of a real image decodes past --max_pixels, at a size other than
its decoder's, or with an error other than a clean InvalidArgument, and none is slow.

    nice -n 10 python benchmarks/fuzz_serving_decode.py --inputs=100000 [--max_minutes=60]

Mutates the seeds of tests/decode_fuzzing.py (JPEG baseline, progressive and grey; PNG 8-bit,
16-bit grey, palette, RGBA; GIF; BMP; WebP lossy and lossless) with 1 to 4 random edits each,
serves every mutant through `image_decode.decode_image` (traced, max_pixels = 4x a seed's
pixels) and decodes it with TensorFlow's decoder alone to compare. Prints progress every
10,000 inputs, then every failing input (base64) and, last, the counts: inputs, refused,
decoded, decoded past the limit, decoded at another size than the decoder's, refused though
the decoder makes it within the limit (safe, counted), crashes, and the slowest input's CPU ms
against the median. Stops early at --max_minutes, and says so in the counts.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests import decode_fuzzing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_minutes", type=float, default=float("inf"))
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    seeds = decode_fuzzing.seeds()
    names = sorted(seeds)
    counts = dict.fromkeys(
        ("refused", "decoded", "past_the_limit", "disagrees", "refused_needlessly", "crashed"), 0
    )
    milliseconds, failures, slowest = [], [], (0.0, "")
    for seed in seeds.values():  # traced before timing
        decode_fuzzing.check(seed)
    started = time.monotonic()
    done = 0
    for done in range(1, arguments.inputs + 1):
        name = rng.choice(names)
        mutant = decode_fuzzing.mutate(seeds[name], decode_fuzzing.random_edits(rng))
        outcome = decode_fuzzing.check(mutant)
        counts[outcome.status] += 1
        for flag in ("past_the_limit", "disagrees", "refused_needlessly"):
            counts[flag] += getattr(outcome, flag)
        if outcome.status == "crashed" or outcome.past_the_limit or outcome.disagrees:
            failures.append((name, outcome, mutant))
        milliseconds.append(outcome.milliseconds)
        if outcome.milliseconds > slowest[0]:
            slowest = (outcome.milliseconds, f"{name}: {outcome.status} {outcome.message[:80]}")
        if done % 10_000 == 0:
            print(f"{done} inputs, {time.monotonic() - started:.0f} s, {counts}", flush=True)
        if time.monotonic() - started > 60 * arguments.max_minutes:
            break
    for name, outcome, mutant in failures[:20]:
        print(f"FAILED {name}: {outcome} {base64.b64encode(mutant).decode()}")
    minutes = (time.monotonic() - started) / 60
    print(f"slowest: {slowest[0]:.1f} ms ({slowest[1]})")
    print(
        f"inputs {done}{' (stopped at --max_minutes)' if done < arguments.inputs else ''} in "
        f"{minutes:.1f} min ({done / minutes / 60:.0f}/s); refused {counts['refused']}, decoded "
        f"{counts['decoded']}, decoded past the limit {counts['past_the_limit']}, decoded at "
        f"another size than the decoder's {counts['disagrees']}, refused though within the limit "
        f"{counts['refused_needlessly']}, crashes {counts['crashed']}; slowest "
        f"{max(milliseconds):.1f} ms CPU, median {statistics.median(milliseconds):.2f} ms"
    )


if __name__ == "__main__":
    main()
