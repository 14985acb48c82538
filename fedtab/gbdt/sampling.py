"""The random draws of a GBDT job: which columns (shared) and which of its rows (per bank) a tree
uses.

Threat model: a draw an attacker can recompute turns released aggregates into equations about
known subsets of rows. With ``subsample = 0.5``, ``max_depth = 1`` and a huge
``min_split_loss`` every tree is a root leaf over the sampled rows, whose size and label sum the
model reveals; knowing which rows each tree sampled, a least-squares solve returns every row's
label (``tests/test_attack_sampling_seeds.py``). So:

* column sampling must agree between banks but stay unknown to the aggregator and operator: it
  is keyed with :attr:`JobContext.consortium_secret` (derived by every bank from the shard key,
  which neither the aggregator nor the operator holds);
* a bank's row sampling is keyed with :attr:`JobContext.bank_secret`, known to that bank alone
  (derived from a random secret created in its own folder, :mod:`bank_node.sampling_secret`).

Each tree's generator is seeded with ``HMAC-SHA256(secret, purpose | seed | tree)``, so the
draws of one tree say nothing about another's or about the secret. With an empty secret (the
default of in-process runs, which hold every bank's data anyway) the draws fall back to the
WEAKENED public derivation from the job seed, the tree index and a hash of the bank's name:
anyone who knows the job file can recompute them. The bank agent always sets both secrets.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from fedtab.protocol.steps import JobContext


def _keyed(secret: bytes, purpose: bytes, seed: int, tree: int) -> np.random.Generator:
    message = b"fedtab-gbdt|" + purpose + b"|%d|%d" % (seed, tree)
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def column_rng(ctx: JobContext, seed: int, tree: int) -> np.random.Generator:
    """The generator of tree ``tree``'s column sample, identical on every bank."""
    if ctx.consortium_secret:
        return _keyed(ctx.consortium_secret, b"columns", seed, tree)
    return np.random.default_rng([seed, tree, 1])  # WEAKENED: public (see module docstring)


def row_rng(ctx: JobContext, seed: int, tree: int) -> np.random.Generator:
    """The generator of tree ``tree``'s row sample at this bank (this bank's own)."""
    if ctx.bank_secret:
        return _keyed(ctx.bank_secret, b"rows", seed, tree)
    # WEAKENED: public (see module docstring)
    bank_key = int.from_bytes(hashlib.sha256(ctx.bank_name.encode()).digest()[:8], "big")
    return np.random.default_rng([seed, tree, 0, bank_key])


def sample_columns(ctx: JobContext, seed: int, tree: int, n_features: int,
                   colsample: float) -> np.ndarray:
    """Sorted feature ids of tree ``tree`` (all of them when ``colsample`` keeps every one)."""
    n_cols = max(1, round(colsample * n_features))
    if n_cols >= n_features:
        return np.arange(n_features)
    chosen = column_rng(ctx, seed, tree).choice(n_features, size=n_cols, replace=False)
    return np.sort(chosen)


def sampled_out(ctx: JobContext, seed: int, tree: int, n_rows: int,
                subsample: float) -> np.ndarray:
    """Boolean mask of this bank's rows left out of tree ``tree`` (none when ``subsample`` is 1)."""
    if subsample >= 1.0:
        return np.zeros(n_rows, dtype=bool)
    return np.asarray(row_rng(ctx, seed, tree).random(n_rows) >= subsample)
