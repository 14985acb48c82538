"""Bank profiles for the synthetic consortium: who each bank's customers are and how fraud looks.

Every bank shares one schema but differs in size, customer demographics and, above all, in the
fraud pattern it mostly sees. Each bank also sees a little of the other banks' patterns, so a
model trained on one bank alone misses fraud that the consortium as a whole can learn.

Profiles depend only on the bank's index (never on the seed): the seed drives the rows, the
profile drives what the rows look like.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedtab.errors import ConfigError

CHANNELS: tuple[str, ...] = ("pos", "contactless", "online", "mobile", "atm")
# "cash_withdrawal" is the category of every ATM transaction; "jewelry" is the rare one.
MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurant",
    "fuel",
    "online_retail",
    "travel",
    "electronics",
    "jewelry",
    "digital_goods",
    "gaming",
    "pharmacy",
    "utilities",
    "cash_withdrawal",
)
# The fraud patterns, each the speciality of one of the three base banks.
PATTERNS: tuple[str, ...] = ("card_testing", "account_takeover", "cash_out")

BASE_NAMES: tuple[str, ...] = ("metro_bank", "rural_bank", "young_bank")
EXTRA_NAMES: tuple[str, ...] = (
    "coastal_bank",
    "harbor_bank",
    "summit_bank",
    "valley_bank",
    "river_bank",
    "capital_bank",
    "pioneer_bank",
)
BASE_SHARES: tuple[float, ...] = (0.60, 0.15, 0.25)
EXTRA_SHARES: tuple[float, ...] = (0.20, 0.10, 0.30, 0.12, 0.08, 0.16, 0.06)
MAX_BANKS = 64


@dataclass(frozen=True)
class BankProfile:
    """How one bank's transactions are distributed.

    ``channel_probs`` is over :data:`CHANNELS`; ``category_probs`` is over the non-ATM
    categories (all of :data:`MERCHANT_CATEGORIES` but ``cash_withdrawal``); ``pattern_mix`` is
    over :data:`PATTERNS` and gives the share of this bank's frauds of each pattern.
    ``amount_mix`` rows are ``(weight, median, log-sd)`` of a log-normal mixture.
    """

    name: str
    share: float
    fraud_rate: float
    pattern_mix: tuple[float, float, float]
    channel_probs: tuple[float, ...]
    category_probs: tuple[float, ...]
    amount_mix: tuple[tuple[float, float, float], ...]
    customer_age_mean: float
    customer_age_sd: float
    card_age_median_days: float
    night_share: float
    country_mismatch_rate: float
    device_change_rate: float
    velocity_mean_24h: float

    @property
    def primary_pattern(self) -> str:
        """The fraud pattern this bank sees most."""
        return PATTERNS[int(np.argmax(self.pattern_mix))]


def _normalised(values: tuple[float, ...]) -> tuple[float, ...]:
    total = float(sum(values))
    return tuple(float(v) / total for v in values)


# Non-ATM categories in MERCHANT_CATEGORIES order without "cash_withdrawal".
_METRO = BankProfile(
    name="metro_bank",
    share=BASE_SHARES[0],
    fraud_rate=0.012,
    pattern_mix=(0.80, 0.10, 0.10),
    channel_probs=_normalised((0.30, 0.30, 0.25, 0.11, 0.04)),
    category_probs=_normalised((0.24, 0.18, 0.06, 0.16, 0.05, 0.05, 0.003, 0.07, 0.03, 0.06, 0.09)),
    amount_mix=((0.62, 18.0, 0.8), (0.33, 85.0, 0.8), (0.05, 700.0, 1.0)),
    customer_age_mean=41.0,
    customer_age_sd=13.0,
    card_age_median_days=800.0,
    night_share=0.06,
    country_mismatch_rate=0.04,
    device_change_rate=0.03,
    velocity_mean_24h=3.5,
)
_RURAL = BankProfile(
    name="rural_bank",
    share=BASE_SHARES[1],
    fraud_rate=0.003,
    pattern_mix=(0.15, 0.70, 0.15),
    channel_probs=_normalised((0.55, 0.20, 0.12, 0.07, 0.06)),
    category_probs=_normalised((0.32, 0.12, 0.18, 0.06, 0.03, 0.04, 0.003, 0.02, 0.01, 0.10, 0.12)),
    amount_mix=((0.55, 30.0, 0.7), (0.40, 110.0, 0.8), (0.05, 900.0, 0.9)),
    customer_age_mean=56.0,
    customer_age_sd=14.0,
    card_age_median_days=2200.0,
    night_share=0.03,
    country_mismatch_rate=0.01,
    device_change_rate=0.015,
    velocity_mean_24h=2.0,
)
_YOUNG = BankProfile(
    name="young_bank",
    share=BASE_SHARES[2],
    fraud_rate=0.008,
    pattern_mix=(0.12, 0.08, 0.80),
    channel_probs=_normalised((0.10, 0.25, 0.25, 0.30, 0.10)),
    category_probs=_normalised((0.16, 0.22, 0.03, 0.17, 0.06, 0.08, 0.002, 0.12, 0.09, 0.03, 0.04)),
    amount_mix=((0.70, 14.0, 0.8), (0.27, 60.0, 0.8), (0.03, 450.0, 1.0)),
    customer_age_mean=26.0,
    customer_age_sd=5.0,
    card_age_median_days=300.0,
    night_share=0.14,
    country_mismatch_rate=0.03,
    device_change_rate=0.05,
    velocity_mean_24h=5.0,
)
_BASE: tuple[BankProfile, ...] = (_METRO, _RURAL, _YOUNG)


def _variation(index: int) -> BankProfile:
    """An extra bank (index >= 3): a perturbed copy of base bank ``index % 3``.

    The perturbation comes from a generator seeded by the index alone, so bank ``i`` looks the
    same whatever the seed or the number of banks.
    """
    base = _BASE[index % 3]
    rng = np.random.default_rng(1_000 + index)
    offset = index - len(BASE_NAMES)
    name = EXTRA_NAMES[offset] if offset < len(EXTRA_NAMES) else f"bank_{index:02d}"
    share = EXTRA_SHARES[offset % len(EXTRA_SHARES)]
    mix = np.asarray(base.pattern_mix) + rng.uniform(0.0, 0.15, size=3)
    channel = np.asarray(base.channel_probs) * rng.uniform(0.7, 1.3, size=len(CHANNELS))
    scale = float(rng.uniform(0.8, 1.25))
    return replace(
        base,
        name=name,
        share=share,
        fraud_rate=float(np.clip(base.fraud_rate * rng.uniform(0.6, 1.4), 0.002, 0.015)),
        pattern_mix=_normalised(tuple(float(m) for m in mix)),  # type: ignore[arg-type]
        channel_probs=_normalised(tuple(float(c) for c in channel)),
        amount_mix=tuple((w, m * scale, s) for w, m, s in base.amount_mix),
        customer_age_mean=float(np.clip(base.customer_age_mean + rng.normal(0, 4), 22, 65)),
        card_age_median_days=base.card_age_median_days * float(rng.uniform(0.7, 1.4)),
    )


def bank_profiles(n_banks: int) -> tuple[BankProfile, ...]:
    """The profiles of an ``n_banks`` consortium, shares renormalised to sum to 1.

    With three banks the shares are 60/15/25 %. Raises :class:`ConfigError` unless
    ``1 <= n_banks <= MAX_BANKS``.
    """
    if not 1 <= n_banks <= MAX_BANKS:
        raise ConfigError(f"number of banks must be between 1 and {MAX_BANKS}, got {n_banks}")
    profiles = [_BASE[i] if i < len(_BASE) else _variation(i) for i in range(n_banks)]
    total = sum(p.share for p in profiles)
    return tuple(replace(p, share=p.share / total) for p in profiles)
