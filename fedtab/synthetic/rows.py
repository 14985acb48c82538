"""Row generation for one bank: legitimate transactions and the three fraud patterns.

Columns are built as numpy arrays (vectorised, so 300k rows take well under a second).
Categorical columns are held as integer codes into :data:`CHANNELS` and
:data:`MERCHANT_CATEGORIES` (``-1`` = missing); nullable integer columns as float with NaN.
Each fraud pattern overrides a handful of features, each only with some probability, so frauds
overlap legitimate traffic and no single feature gives them away.
"""

from __future__ import annotations

import numpy as np

from fedtab.synthetic.profiles import CHANNELS, MERCHANT_CATEGORIES, PATTERNS, BankProfile

Columns = dict[str, np.ndarray]

ATM = CHANNELS.index("atm")
ONLINE = CHANNELS.index("online")
MOBILE = CHANNELS.index("mobile")
POS = CHANNELS.index("pos")
CASH = MERCHANT_CATEGORIES.index("cash_withdrawal")
NON_ATM_CATEGORIES = np.array([i for i in range(len(MERCHANT_CATEGORIES)) if i != CASH])

AMOUNT_MAX = 50_000.0
CARD_AGE_MAX = 20_000.0
COUNT_1H_MAX = 200
COUNT_24H_MAX = 1_000
AGE_MIN, AGE_MAX = 18.0, 100.0

# Share of frauds that look entirely legitimate.
STEALTH_SHARE = 0.12
# Share of rows with a missing value, per column (all banks, legitimate and fraud alike).
MISSING_RATES: dict[str, float] = {
    "card_age_days": 0.01,
    "customer_age": 0.005,
    "merchant_category": 0.003,
}


def _codes(names: tuple[str, ...], wanted: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Category codes and their probabilities for a small named distribution."""
    codes = np.array([names.index(k) for k in wanted])
    probs = np.array(list(wanted.values()), dtype=float)
    return codes, probs / probs.sum()


def _night_hours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Hours 22..23 and 0..5, the window of most card fraud."""
    return np.asarray(rng.choice(np.array([22, 23, 0, 1, 2, 3, 4, 5]), size=n))


def _lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    return np.asarray(median * np.exp(sigma * rng.standard_normal(n)))


def legit_rows(rng: np.random.Generator, profile: BankProfile, n: int) -> Columns:
    """``n`` legitimate transactions of a bank with ``profile``."""
    channel = rng.choice(len(CHANNELS), size=n, p=np.asarray(profile.channel_probs))
    category = rng.choice(NON_ATM_CATEGORIES, size=n, p=np.asarray(profile.category_probs))
    category = np.where(channel == ATM, CASH, category)

    weights = np.array([w for w, _, _ in profile.amount_mix])
    component = rng.choice(len(weights), size=n, p=weights / weights.sum())
    medians = np.array([m for _, m, _ in profile.amount_mix])[component]
    sigmas = np.array([s for _, _, s in profile.amount_mix])[component]
    amount = medians * np.exp(sigmas * rng.standard_normal(n))
    atm_amount = 20.0 * np.maximum(1.0, np.round(_lognormal(rng, 80.0, 0.6, n) / 20.0))
    amount = np.where(channel == ATM, atm_amount, amount)

    day = np.clip(np.round(rng.normal(14.0, 3.5, size=n)), 6, 21).astype(np.int64)
    hour = np.where(rng.random(n) < profile.night_share, _night_hours(rng, n), day)

    rate_24h = rng.gamma(2.0, profile.velocity_mean_24h / 2.0, size=n)
    count_24h = rng.poisson(rate_24h)
    count_1h = rng.binomial(count_24h, 0.12)

    card_age = np.floor(_lognormal(rng, profile.card_age_median_days, 0.9, n))
    customer_age = np.round(rng.normal(profile.customer_age_mean, profile.customer_age_sd, n))
    cols: Columns = {
        "amount": amount,
        "merchant_category": category,
        "channel": channel,
        "hour": hour,
        "country_mismatch": (rng.random(n) < profile.country_mismatch_rate).astype(np.int64),
        "card_age_days": card_age,
        "txn_count_1h": count_1h,
        "txn_count_24h": count_24h,
        "device_change": (rng.random(n) < profile.device_change_rate).astype(np.int64),
        "customer_age": customer_age,
    }
    _lookalikes(rng, cols, n)
    return cols


def _lookalikes(rng: np.random.Generator, cols: Columns, n: int) -> None:
    """Legitimate traffic that resembles fraud: app-store micro-payments and travellers."""
    micro = rng.random(n) < 0.015
    k = int(micro.sum())
    codes, probs = _codes(CHANNELS, {"online": 0.5, "mobile": 0.5})
    cols["channel"][micro] = rng.choice(codes, size=k, p=probs)
    codes, probs = _codes(MERCHANT_CATEGORIES, {"digital_goods": 0.6, "gaming": 0.4})
    cols["merchant_category"][micro] = rng.choice(codes, size=k, p=probs)
    cols["amount"][micro] = np.clip(_lognormal(rng, 4.0, 0.7, k), 0.5, 60.0)
    cols["hour"][micro] = rng.integers(0, 24, size=k)
    cols["txn_count_1h"][micro] += rng.poisson(1.5, size=k)
    cols["txn_count_24h"][micro] += rng.poisson(4.0, size=k)

    travel = (rng.random(n) < 0.01) & ~micro
    k = int(travel.sum())
    cols["country_mismatch"][travel] = 1
    cols["device_change"][travel] = (rng.random(k) < 0.25).astype(np.int64)
    cols["amount"][travel] = _lognormal(rng, 250.0, 1.1, k)
    codes, probs = _codes(
        MERCHANT_CATEGORIES,
        {"travel": 0.4, "restaurant": 0.3, "electronics": 0.15, "jewelry": 0.05, "grocery": 0.1},
    )
    atm = cols["channel"][travel] == ATM
    cols["merchant_category"][travel] = np.where(atm, CASH, rng.choice(codes, size=k, p=probs))


def _override(rng: np.random.Generator, cols: Columns, name: str, value: np.ndarray,
              prob: float) -> None:
    """Replace column ``name`` by ``value`` on a random ``prob`` share of the rows."""
    mask = rng.random(len(value)) < prob
    cols[name] = np.where(mask, value, cols[name])


def _card_testing(rng: np.random.Generator, cols: Columns, n: int) -> None:
    """Stolen card numbers probed with many tiny online purchases, mostly at night."""
    codes, probs = _codes(CHANNELS, {"online": 0.78, "mobile": 0.22})
    _override(rng, cols, "channel", rng.choice(codes, size=n, p=probs), 0.85)
    codes, probs = _codes(
        MERCHANT_CATEGORIES, {"digital_goods": 0.45, "gaming": 0.25, "online_retail": 0.30}
    )
    _override(rng, cols, "merchant_category", rng.choice(codes, size=n, p=probs), 0.7)
    small = np.clip(_lognormal(rng, 2.0, 0.7, n), 0.5, 30.0)
    _override(rng, cols, "amount", small, 0.8)
    _override(rng, cols, "hour", _night_hours(rng, n), 0.6)
    burst = 3 + rng.poisson(6.0, size=n)
    mask = rng.random(n) < 0.7
    cols["txn_count_1h"] = np.where(mask, burst, cols["txn_count_1h"])
    cols["txn_count_24h"] = np.where(mask, burst + rng.poisson(10.0, size=n), cols["txn_count_24h"])
    _override(rng, cols, "country_mismatch", np.ones(n, dtype=np.int64), 0.35)


def _account_takeover(rng: np.random.Generator, cols: Columns, n: int) -> None:
    """A taken-over account: new device abroad, one large purchase in a rare category."""
    _override(rng, cols, "country_mismatch", np.ones(n, dtype=np.int64), 0.75)
    _override(rng, cols, "device_change", np.ones(n, dtype=np.int64), 0.7)
    large = np.clip(_lognormal(rng, 2500.0, 0.6, n), 300.0, AMOUNT_MAX)
    _override(rng, cols, "amount", large, 0.8)
    codes, probs = _codes(
        MERCHANT_CATEGORIES, {"jewelry": 0.65, "electronics": 0.20, "travel": 0.15}
    )
    _override(rng, cols, "merchant_category", rng.choice(codes, size=n, p=probs), 0.7)
    codes, probs = _codes(CHANNELS, {"online": 0.6, "pos": 0.4})
    _override(rng, cols, "channel", rng.choice(codes, size=n, p=probs), 0.8)


def _cash_out(rng: np.random.Generator, cols: Columns, n: int) -> None:
    """Mule accounts on young, new cards emptied at ATMs at night in round amounts."""
    _override(rng, cols, "channel", np.full(n, ATM), 0.85)
    cash = np.clip(20.0 * np.round(_lognormal(rng, 400.0, 0.35, n) / 20.0), 200.0, 1000.0)
    cols["amount"] = np.where(cols["channel"] == ATM, cash, cols["amount"])
    _override(rng, cols, "hour", _night_hours(rng, n), 0.55)
    count_24h = 3 + rng.poisson(5.0, size=n)
    mask = rng.random(n) < 0.65
    cols["txn_count_24h"] = np.where(mask, count_24h, cols["txn_count_24h"])
    cols["txn_count_1h"] = np.where(mask, rng.binomial(count_24h, 0.35), cols["txn_count_1h"])
    _override(rng, cols, "card_age_days", np.floor(_lognormal(rng, 25.0, 0.8, n)), 0.65)
    _override(rng, cols, "customer_age", rng.integers(18, 26, size=n).astype(float), 0.6)
    _override(rng, cols, "device_change", np.ones(n, dtype=np.int64), 0.3)


def fraud_rows(rng: np.random.Generator, profile: BankProfile, pattern: str, n: int) -> Columns:
    """``n`` frauds of ``pattern`` (one of :data:`PATTERNS`) against a bank's customers.

    A share :data:`STEALTH_SHARE` of them shows no trace of the pattern (undetectable fraud).
    """
    base = legit_rows(rng, profile, n)
    cols = {k: v.copy() for k, v in base.items()}
    if pattern == "card_testing":
        _card_testing(rng, cols, n)
    elif pattern == "account_takeover":
        _account_takeover(rng, cols, n)
    elif pattern == "cash_out":
        _cash_out(rng, cols, n)
    else:  # pragma: no cover - PATTERNS is closed
        raise ValueError(f"unknown fraud pattern {pattern!r}; known: {PATTERNS}")
    stealth = rng.random(n) < STEALTH_SHARE
    return {k: np.where(stealth, base[k], v) for k, v in cols.items()}


def finish(rng: np.random.Generator, cols: Columns) -> Columns:
    """Make columns consistent, clip them to the contract's ranges and punch missing values."""
    n = len(cols["amount"])
    atm = cols["channel"] == ATM
    category = np.where(atm, CASH, cols["merchant_category"])
    category = np.where(~atm & (category == CASH), MERCHANT_CATEGORIES.index("online_retail"),
                        category)
    count_24h = np.clip(cols["txn_count_24h"], 0, COUNT_24H_MAX)
    out: Columns = {
        "amount": np.clip(np.round(cols["amount"], 2), 0.01, AMOUNT_MAX),
        "merchant_category": category.astype(np.int64),
        "channel": cols["channel"].astype(np.int64),
        "hour": cols["hour"].astype(np.int64),
        "country_mismatch": cols["country_mismatch"].astype(np.int64),
        "card_age_days": np.clip(cols["card_age_days"], 0.0, CARD_AGE_MAX),
        "txn_count_1h": np.clip(np.minimum(cols["txn_count_1h"], count_24h), 0, COUNT_1H_MAX)
        .astype(np.int64),
        "txn_count_24h": count_24h.astype(np.int64),
        "device_change": cols["device_change"].astype(np.int64),
        "customer_age": np.clip(cols["customer_age"], AGE_MIN, AGE_MAX),
    }
    for name, rate in MISSING_RATES.items():
        missing = rng.random(n) < rate
        if name == "merchant_category":
            out[name] = np.where(missing, -1, out[name])
        else:
            out[name] = np.where(missing, np.nan, out[name])
    return out
