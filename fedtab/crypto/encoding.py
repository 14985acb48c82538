"""Fixed-point encoding of float vectors and packing of many slots into one Paillier plaintext.

Threat model: this module sees plaintext values of one bank only; it holds no key. Encoding is
kept apart from encryption (as in python-paillier) so its error bounds can be reasoned about and
tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedtab.errors import EncodingError


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
