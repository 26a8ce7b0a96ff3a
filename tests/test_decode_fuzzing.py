"""Differential fuzzing, a short seeded run: no mutant of a real file decodes past the limit,
at a size other than its decoder's, with an error other than InvalidArgument, or slowly.
The long run is benchmarks/fuzz_serving_decode.py."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import decode_fuzzing

# Generous for a shared 2-core machine: these 24x16 files decode in ~2 ms when it is quiet.
SLOWEST_MILLISECONDS = 1000

SEEDS = functools.lru_cache(maxsize=None)(decode_fuzzing.seeds)
EDIT = st.tuples(
    st.sampled_from(decode_fuzzing.EDITS),
    st.integers(0, (1 << 16) - 1),
    st.integers(0, (1 << 16) - 1),
)


@pytest.mark.parametrize("name", sorted(decode_fuzzing.seeds()))
def test_every_seed_is_decoded_at_its_size(name):
    outcome = decode_fuzzing.check(SEEDS()[name])
    assert outcome.status == "decoded", outcome
    assert outcome.shape == (decode_fuzzing.HEIGHT, decode_fuzzing.WIDTH, 3)


@settings(
    max_examples=300, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(sorted(decode_fuzzing.seeds())),
    edits=st.lists(EDIT, min_size=1, max_size=4),
)
def test_a_mutated_file_is_refused_cleanly_or_decoded_within_the_limit_at_its_size(name, edits):
    outcome = decode_fuzzing.check(decode_fuzzing.mutate(SEEDS()[name], edits))
    assert outcome.status != "crashed", outcome
    assert not outcome.past_the_limit, outcome
    assert not outcome.disagrees, outcome
    assert outcome.milliseconds < SLOWEST_MILLISECONDS, outcome
