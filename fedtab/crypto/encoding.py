"""Fixed-point encoding of float vectors and packing of many slots into one Paillier plaintext.

Threat model: this module sees plaintext values of one bank only; it holds no key. Encoding is
kept apart from encryption (as in python-paillier) so its error bounds can be reasoned about and
tested on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedtab.errors import EncodingError

if TYPE_CHECKING:
    from fedtab.crypto.keys import PublicKey


@dataclass(frozen=True)
class EncodingSpec:
    """How one bank's float vector becomes integers that can be summed under encryption.

    A value ``v`` with ``|v| <= clip`` is encoded as ``round(v * 2**frac_bits)`` and shifted by
    an offset so it is non-negative; ``max_summands`` is the largest number of contributions
    (banks) that will ever be added, from which the per-slot headroom is derived.
    """

    frac_bits: int
    clip: float
    max_summands: int

    def __post_init__(self) -> None:
        if not 0 <= self.frac_bits <= 60:
            raise EncodingError(f"frac_bits must be in [0, 60], got {self.frac_bits}")
        if not (self.clip > 0 and self.clip < 2.0**62):
            raise EncodingError(f"clip must be positive and finite, got {self.clip}")
        if not 1 <= self.max_summands <= 2**16:
            raise EncodingError(f"max_summands must be in [1, 65536], got {self.max_summands}")

    def to_dict(self) -> dict[str, int | float]:
        """JSON-able form (used in wire headers and step requests)."""
        return {"frac_bits": self.frac_bits, "clip": self.clip, "max_summands": self.max_summands}

    @classmethod
    def from_dict(cls, data: dict[str, int | float]) -> EncodingSpec:
        """Inverse of :meth:`to_dict`; raises :class:`EncodingError` on bad fields."""
        try:
            return cls(
                frac_bits=int(data["frac_bits"]),
                clip=float(data["clip"]),
                max_summands=int(data["max_summands"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EncodingError(f"malformed encoding spec {data!r}: {exc}") from exc


# --- slot arithmetic -------------------------------------------------------------------------
#
# Layout. A value ``v`` (|v| <= clip) becomes ``e = rint(v * 2**frac_bits) + offset`` with
# ``offset = ceil(clip * 2**frac_bits)``, so ``0 <= e <= max_encoded = 2 * offset``. A slot is
# ``slot_bits = bit_length(max_summands * max_encoded)`` wide, so the sum of up to
# ``max_summands`` encoded values never carries into the next slot (the extra bits above
# ``bit_length(max_encoded)`` are the headroom). A plaintext holds at most
# ``slots_per_plaintext = (|n| - 2) // slot_bits`` slots (one spare bit below ``n`` as margin).
# A vector of ``length`` values uses ``count = ceil(length / slots_per_plaintext)`` plaintexts
# and spreads its values evenly: every plaintext but the last holds ``per = ceil(length /
# count)`` values, slot 0 in the least significant bits; unused slots are zero. Because ``per``
# depends only on ``length`` and ``count``, a plaintext list can be decoded without the key.


def encoding_offset(spec: EncodingSpec) -> int:
    """``ceil(clip * 2**frac_bits)``: added to every encoded value so it is non-negative."""
    return math.ceil(spec.clip * 2.0**spec.frac_bits)


def max_encoded(spec: EncodingSpec) -> int:
    """Largest encoded value of one summand (``2 * offset``)."""
    return 2 * encoding_offset(spec)


def slot_bits(spec: EncodingSpec) -> int:
    """Width of one slot in bits, including headroom for ``max_summands`` summands."""
    return (spec.max_summands * max_encoded(spec)).bit_length()


def headroom_bits(spec: EncodingSpec) -> int:
    """Bits reserved above one encoded value so that sums cannot overflow a slot."""
    return slot_bits(spec) - max_encoded(spec).bit_length()


def slots_per_plaintext(spec: EncodingSpec, public_key: PublicKey) -> int:
    """How many slots fit in one plaintext below ``n`` (leaving one margin bit).

    Raises :class:`EncodingError` when not even one slot fits the key.
    """
    slots = (public_key.bits - 2) // slot_bits(spec)
    if slots < 1:
        raise EncodingError(
            f"a {slot_bits(spec)}-bit slot does not fit a {public_key.bits}-bit key"
        )
    return slots


def quantisation_bound(spec: EncodingSpec) -> float:
    """Largest absolute error per value per summand: ``2**-(frac_bits + 1)``.

    Encoding rounds ``v * 2**frac_bits`` to the nearest integer (exact in float64: a power-of-two
    scaling is exact and ``rint`` is correctly rounded), so each summand's value is off by at
    most half a unit of ``2**-frac_bits``. The slot sum of ``k`` summands is exact integer
    arithmetic, so a decoded sum is within ``k * quantisation_bound(spec)`` of the true sum,
    plus half an ulp of the result from the final conversion to float64.
    """
    return 2.0 ** -(spec.frac_bits + 1)


def plaintext_layout(length: int, count: int) -> int:
    """Values per plaintext (``ceil(length / count)``) for a vector spread over ``count``."""
    return -(-length // count) if count else 0


def encode_values(values: np.ndarray, spec: EncodingSpec) -> list[int]:
    """Fixed-point encode a float64 1-D array into non-negative Python ints.

    Raises :class:`EncodingError` naming the first position holding NaN, inf or a value
    outside ``[-clip, clip]``, or when ``values`` is not one-dimensional.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"values are not a float64 vector: {exc}") from exc
    if arr.ndim != 1:
        raise EncodingError(f"expected a 1-D float64 vector, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (np.abs(arr) > spec.clip)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        value = float(arr[pos])
        why = "is not finite" if not math.isfinite(value) else f"is outside ±{spec.clip!r}"
        raise EncodingError(f"value at position {pos} ({value!r}) {why}; cannot encode it")
    scaled = np.rint(arr * 2.0**spec.frac_bits)
    offset = encoding_offset(spec)
    if max_encoded(spec) < 2**62:
        return (scaled.astype(np.int64) + offset).tolist()
    return [int(x) + offset for x in scaled.tolist()]


def pack_encoded(encoded: Sequence[int], spec: EncodingSpec, slots: int) -> list[int]:
    """Pack encoded ints into plaintexts of at most ``slots`` slots (layout above)."""
    length = len(encoded)
    if length == 0:
        return []
    count = -(-length // slots)
    per = plaintext_layout(length, count)
    bits = slot_bits(spec)
    out: list[int] = []
    for start in range(0, length, per):
        pt = 0
        for e in reversed(encoded[start : start + per]):
            pt = (pt << bits) | e
        out.append(pt)
    return out


def decode_plaintexts(
    plaintexts: Sequence[int], spec: EncodingSpec, length: int, summands: int
) -> np.ndarray:
    """Unpack and decode summed plaintexts into a float64 array of shape ``(length,)``.

    ``summands`` is how many vectors were added. Verifies the headroom: a slot above
    ``summands * max_encoded``, a non-zero unused slot or bits above the last slot mean overflow
    or corruption and raise :class:`EncodingError`; so does a plaintext count that does not
    match ``length`` for any key.
    """
    if not 1 <= summands <= spec.max_summands:
        raise EncodingError(f"summands={summands} outside [1, max_summands={spec.max_summands}]")
    count = len(plaintexts)
    if length < 0 or (length == 0) != (count == 0):
        raise EncodingError(f"{count} plaintexts cannot hold a vector of length {length}")
    if length == 0:
        return np.zeros(0, dtype=np.float64)
    per = plaintext_layout(length, count)
    if (count - 1) * per >= length:
        raise EncodingError(f"{count} plaintexts cannot hold a vector of length {length}")
    bits = slot_bits(spec)
    mask = (1 << bits) - 1
    limit = summands * max_encoded(spec)
    slots: list[int] = []
    for index, pt in enumerate(plaintexts):
        pt = int(pt)
        if pt < 0 or pt >> (per * bits):
            raise EncodingError(f"plaintext {index} has bits above its last slot (corrupt)")
        for _ in range(per):
            slots.append(pt & mask)
            pt >>= bits
    values, padding = slots[:length], slots[length:]
    if any(padding):
        raise EncodingError("an unused slot is non-zero: the ciphertexts are corrupt")
    over = [i for i, s in enumerate(values) if s > limit]
    if over:
        raise EncodingError(
            f"slot overflow at position {over[0]}: {len(over)} slot(s) exceed {summands} x the "
            "largest encoded value (more summands than declared, or corrupt ciphertexts)"
        )
    shift = summands * encoding_offset(spec)
    scale = 2.0**-spec.frac_bits
    if limit < 2**62:
        ints = np.array(values, dtype=np.int64) - shift
        return ints.astype(np.float64) * scale
    return np.array([float(s - shift) for s in values], dtype=np.float64) * scale
