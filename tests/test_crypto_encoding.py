"""Fixed-point encoding, slot packing and headroom checks (no encryption needed here).

Plaintext packing is linear: adding packed plaintexts is exactly what the homomorphic sum does
to the underlying plaintexts, so the headroom and error bounds can be tested on plain integers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedtab.crypto import (
    EncodingSpec,
    PublicKey,
    decode_plaintexts,
    headroom_bits,
    num_ciphertexts,
    quantisation_bound,
    slot_bits,
    slots_per_plaintext,
)
from fedtab.crypto.encoding import (
    encode_values,
    encoding_offset,
    max_encoded,
    pack_encoded,
    plaintext_layout,
)
from fedtab.crypto.keys import PrivateKey
from fedtab.errors import EncodingError

BENCH_SPEC = EncodingSpec(frac_bits=24, clip=2.0**20, max_summands=16)


def test_benchmark_encoding_layout(private_key_2048: PrivateKey) -> None:
    # 2^20 * 2^24 = 2^44 -> encoded values in [0, 2^45] (46 bits) + 4 headroom bits for 16.
    assert encoding_offset(BENCH_SPEC) == 2**44
    assert max_encoded(BENCH_SPEC) == 2**45
    assert slot_bits(BENCH_SPEC) == 50
    assert headroom_bits(BENCH_SPEC) == 4
    assert slots_per_plaintext(BENCH_SPEC, private_key_2048.public) == 40
    assert num_ciphertexts(81, BENCH_SPEC, private_key_2048.public) == 3
    assert quantisation_bound(BENCH_SPEC) == 2.0**-25


def test_headroom_holds_max_summands_of_the_largest_value() -> None:
    for spec in (BENCH_SPEC, EncodingSpec(0, 1.0, 1), EncodingSpec(30, 0.3, 3)):
        largest_sum = spec.max_summands * max_encoded(spec)
        assert 2 ** (slot_bits(spec) - 1) <= largest_sum < 2 ** slot_bits(spec)  # tight
        assert headroom_bits(spec) >= math.ceil(math.log2(spec.max_summands)) - 1


def test_slot_too_wide_for_the_key() -> None:
    tiny = PublicKey(3 * 5 * 7 * 11 * 13 * 17 * 19 * 23)  # a 30-bit odd modulus
    with pytest.raises(EncodingError, match="does not fit"):
        slots_per_plaintext(BENCH_SPEC, tiny)


@pytest.mark.parametrize(
    ("values", "position", "why"),
    [
        ([0.0, 1.0, float("nan")], 2, "not finite"),
        ([float("inf"), 1.0], 0, "not finite"),
        ([0.5, -float("inf")], 1, "not finite"),
        ([0.0, 0.0, 0.0, 1.0 + 2**-40], 3, "outside"),
        ([-1.5, 0.0], 0, "outside"),
    ],
)
def test_bad_values_name_their_position(values: list[float], position: int, why: str) -> None:
    spec = EncodingSpec(frac_bits=10, clip=1.0, max_summands=4)
    with pytest.raises(EncodingError, match=f"position {position} .*{why}"):
        encode_values(np.array(values), spec)


def test_non_vector_input_is_refused() -> None:
    with pytest.raises(EncodingError, match="1-D"):
        encode_values(np.zeros((2, 2)), BENCH_SPEC)
    with pytest.raises(EncodingError, match="not a float64 vector"):
        encode_values(np.array(["a", "b"]), BENCH_SPEC)


def test_clip_bounds_encode_to_the_ends() -> None:
    spec = EncodingSpec(frac_bits=3, clip=2.0, max_summands=5)
    assert encode_values(np.array([-2.0, 0.0, 2.0]), spec) == [0, 16, 32]


def _plain_sum(vectors: list[np.ndarray], spec: EncodingSpec, slots: int) -> list[int]:
    """Pack every vector and add the plaintexts as the homomorphic sum would."""
    packed = [pack_encoded(encode_values(v, spec), spec, slots) for v in vectors]
    return [sum(column) for column in zip(*packed, strict=True)]


@st.composite
def _vectors(draw: st.DrawFn) -> tuple[EncodingSpec, int, list[np.ndarray]]:
    parties = draw(st.integers(1, 16))
    spec = EncodingSpec(
        frac_bits=draw(st.integers(0, 52)),
        clip=draw(st.sampled_from([1.0, 0.3, 1e-3, 1000.5, 2.0**20, 1e9])),
        max_summands=draw(st.integers(parties, 300)),
    )
    slots = draw(st.integers(1, 12))
    length = draw(st.integers(0, 40))
    edge = st.sampled_from([0.0, -0.0, spec.clip, -spec.clip, spec.clip / 3])
    elements = st.one_of(st.floats(-spec.clip, spec.clip), edge)
    vectors = [draw(arrays(np.float64, length, elements=elements)) for _ in range(parties)]
    return spec, slots, vectors


@settings(max_examples=150, deadline=None)
@given(_vectors())
def test_decoded_sum_is_within_the_documented_bound(
    case: tuple[EncodingSpec, int, list[np.ndarray]],
) -> None:
    spec, slots, vectors = case
    length, k = len(vectors[0]), len(vectors)
    plaintexts = _plain_sum(vectors, spec, slots)
    assert len(plaintexts) == -(-length // slots)
    decoded = decode_plaintexts(plaintexts, spec, length, k)
    assert decoded.dtype == np.float64 and decoded.shape == (length,)
    bound = Fraction(k) * Fraction(quantisation_bound(spec))
    for i in range(length):
        exact = sum(Fraction(float(v[i])) for v in vectors)
        half_ulp = Fraction(float(np.spacing(abs(decoded[i])))) / 2
        assert abs(Fraction(float(decoded[i])) - exact) <= bound + half_ulp


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 50))
def test_layout_spreads_values_evenly(length: int, slots: int) -> None:
    count = -(-length // slots)
    per = plaintext_layout(length, count)
    assert per <= slots and (count - 1) * per < length <= count * per


def test_overflow_is_detected_when_more_summands_than_declared() -> None:
    spec = EncodingSpec(frac_bits=8, clip=1.0, max_summands=3)  # 3 * 512 fits 11-bit slots
    three = _plain_sum([np.array([1.0, -1.0, 0.25, 1.0])] * 3, spec, slots=3)
    assert np.array_equal(decode_plaintexts(three, spec, 4, 3), [3.0, -3.0, 0.75, 3.0])
    with pytest.raises(EncodingError, match="slot overflow at position 0"):
        decode_plaintexts(three, spec, 4, 2)  # a third summand nobody declared
    with pytest.raises(EncodingError, match="summands"):
        decode_plaintexts(three, spec, 4, 4)  # more than the headroom allows
    four = _plain_sum([np.array([1.0, -1.0, 0.25, 1.0])] * 4, spec, slots=3)  # carries over
    with pytest.raises(EncodingError):
        decode_plaintexts(four, spec, 4, 3)


def test_corrupt_plaintexts_are_detected() -> None:
    spec = EncodingSpec(frac_bits=8, clip=1.0, max_summands=2)
    bits = slot_bits(spec)
    plaintexts = _plain_sum([np.array([0.5, -0.5, 0.0, 1.0, 1.0])] * 2, spec, slots=3)
    assert np.array_equal(
        decode_plaintexts(plaintexts, spec, 5, 2), np.array([1.0, -1.0, 0.0, 2.0, 2.0])
    )
    above = [plaintexts[0] + (1 << (3 * bits)), plaintexts[1]]
    with pytest.raises(EncodingError, match="bits above"):
        decode_plaintexts(above, spec, 5, 2)
    padded = [plaintexts[0], plaintexts[1] + (1 << (2 * bits))]
    with pytest.raises(EncodingError, match="unused slot"):
        decode_plaintexts(padded, spec, 5, 2)
    with pytest.raises(EncodingError, match="cannot hold"):
        decode_plaintexts(plaintexts, spec, 1, 2)
    with pytest.raises(EncodingError, match="cannot hold"):
        decode_plaintexts(plaintexts, spec, 0, 2)


def test_empty_vector() -> None:
    assert pack_encoded(encode_values(np.zeros(0), BENCH_SPEC), BENCH_SPEC, 40) == []
    assert decode_plaintexts([], BENCH_SPEC, 0, 3).shape == (0,)


def test_spec_round_trips_through_dict() -> None:
    assert EncodingSpec.from_dict(BENCH_SPEC.to_dict()) == BENCH_SPEC
