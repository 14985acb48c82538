"""Attack 1 of issue 11: every label of a gbdt job from public subsample seeds, as the operator.

The operator's view is the job it wrote (kind, seed, params, job id, bank names) and the
released ``model.json``; it is not told any bank's row count. The crafted job
(``subsample = 0.5``, ``max_depth = 1``, ``min_split_loss = 1e30``, many trees) makes every
tree a root leaf over that tree's row sample, whose size (roughly, from the cover) and label sum
(exactly, from the leaf value once the size is known) the model reveals. If the operator can
recompute which rows each tree sampled, it finds each bank's row count and solves for every
row's label.

Positive control: contexts without sampling secrets (the weakened public derivation of
:mod:`fedtab.gbdt.sampling`) lose every label. Fixed: contexts built exactly as the bank agent
builds them (:func:`bank_node.sampling_secret.bank_job_context`) leave the attacker at chance,
even when it is handed the true row counts.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from harness import InProcessConsortium, make_frames, new_consortium, write_tables

from bank_node.sampling_secret import SECRET_FILE, bank_job_context, bank_sampling_key
from fedtab.consortium import load_bank_bundle
from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.data.validate import load_table
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.local_runner import run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext

BANKS = ("bank_a", "bank_b", "bank_c")
ROWS = 50  # per bank; 150 unknown labels
JOB_ID = "job-sampling-attack"
SPEC = JobSpec("gbdt", {"n_estimators": 240, "subsample": 0.5, "max_depth": 1,
                        "min_split_loss": 1e30, "min_child_samples": 20, "max_bin": 8}, seed=11)
MAX_ROWS_TRIED = 120  # the operator's search range for each bank's row count


def make_tables() -> dict[str, LocalTable]:
    contract = DataContract(
        features=(FeatureSpec("score", "numeric", lower=-6.0, upper=6.0),
                  FeatureSpec("amount", "numeric", lower=0.0, upper=100.0)),
        label="fraud",
    )
    rng = np.random.default_rng(5)
    return {
        name: LocalTable(contract,
                         np.column_stack([rng.normal(size=ROWS), rng.uniform(0, 100, ROWS)]),
                         (rng.random(ROWS) < 0.3).astype(np.float64))
        for name in BANKS
    }


def train(contexts: dict[str, JobContext], tables: dict[str, LocalTable]) -> bytes:
    trainers = {b: create_trainer(SPEC, contexts[b], tables[b]) for b in BANKS}
    return run_plaintext(trainers).artifacts["model.json"]


# ---------------------------------------------------------------- the attacker (operator view)
@dataclass(frozen=True)
class Recovered:
    row_counts: tuple[int, ...] | None  # None: no row counts fit the model
    labels: np.ndarray | None  # in bank order, rows in table order


@dataclass(frozen=True)
class Trees:
    """What each tree of the model says about its sample: every row's probability before the
    tree (all rows share it: every tree is a root leaf), the root's cover (two significant
    digits in ``model.json``) and its leaf value (float32-exact)."""

    prob: np.ndarray
    cover: np.ndarray
    value: np.ndarray

    def size_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on each sample's size from the rounded covers (size = cover / (p (1 - p)))."""
        ulp = 10.0 ** (np.floor(np.log10(self.cover)) - 1)
        unit = self.prob * (1.0 - self.prob)
        return (self.cover - ulp / 2) / unit - 1e-9, (self.cover + ulp / 2) / unit + 1e-9

    def label_sums(self, sizes: np.ndarray, spec: JobSpec) -> np.ndarray:
        """Each sample's label sum, given its exact size: the leaf value is
        ``-lr * sum(p - y) / (size p (1 - p) + lambda)``."""
        lr, lam = spec.params.get("learning_rate", 0.3), spec.params.get("reg_lambda", 1.0)
        hess = sizes * self.prob * (1.0 - self.prob)
        return np.asarray(sizes * self.prob + self.value * (hess + lam) / lr)


def read_trees(model_json: bytes) -> Trees:
    learner = json.loads(model_json)["learner"]
    base = float(learner["learner_model_param"]["base_score"])
    margin = np.log(base / (1.0 - base))
    prob, cover, value = [], [], []
    for tree in learner["gradient_booster"]["model"]["trees"]:
        assert tree["left_children"] == [-1]  # every tree is a root leaf
        prob.append(1.0 / (1.0 + np.exp(-margin)))
        cover.append(float(tree["sum_hessian"][0]))
        value.append(float(tree["base_weights"][0]))
        margin += value[-1]
    return Trees(np.array(prob), np.array(cover), np.array(value))


def public_samples(spec: JobSpec, bank: str, n_trees: int, rows: int) -> np.ndarray:
    """(trees, rows) mask of the first ``rows`` rows of ``bank`` drawn by each tree, from the
    public derivation (job seed, tree index, hash of the bank's name)."""
    key = int.from_bytes(hashlib.sha256(bank.encode()).digest()[:8], "big")
    return np.array([np.random.default_rng([spec.seed, t, 0, key]).random(rows) < 0.5
                     for t in range(n_trees)])


def find_row_counts(trees: Trees, masks: list[np.ndarray],
                    spec: JobSpec) -> tuple[int, ...] | None:
    """The row counts whose public samples fit every tree's size bounds, and among those the
    one whose label sums are whole numbers (three banks)."""
    lo, hi = trees.size_bounds()
    prefix = [np.concatenate([np.zeros((len(lo), 1), int), np.cumsum(m, axis=1)], axis=1)
              for m in masks]
    grid = np.arange(1, MAX_ROWS_TRIED + 1)
    cand = [c.ravel() for c in np.meshgrid(grid, grid, grid, indexing="ij")]
    for t in range(len(lo)):
        size = sum(p[t, c] for p, c in zip(prefix, cand, strict=True))
        keep = (size >= lo[t]) & (size <= hi[t])
        cand = [c[keep] for c in cand]
    best, best_err = None, np.inf
    for counts in zip(*cand, strict=True):
        sizes = sum(p[:, c] for p, c in zip(prefix, counts, strict=True))
        sums = trees.label_sums(sizes, spec)
        err = float(np.abs(sums - np.rint(sums)).max())
        if err < best_err:
            best, best_err = tuple(int(c) for c in counts), err
    return best if best_err < 1e-3 else None


def attack(spec: JobSpec, banks: tuple[str, ...], model_json: bytes,
           given_counts: tuple[int, ...] | None = None) -> Recovered:
    trees = read_trees(model_json)
    masks = [public_samples(spec, b, len(trees.cover), MAX_ROWS_TRIED) for b in banks]
    counts = find_row_counts(trees, masks, spec)
    use = given_counts or counts
    if use is None:
        return Recovered(None, None)
    design = np.hstack([m[:, :n] for m, n in zip(masks, use, strict=True)]).astype(float)
    sums = trees.label_sums(design.sum(axis=1), spec)
    solution = np.linalg.lstsq(design, sums, rcond=None)[0]
    return Recovered(counts, (solution > 0.5).astype(float))


# ---------------------------------------------------------------- the tests
def weakened_contexts() -> dict[str, JobContext]:
    """No sampling secrets: the public derivation (what every bank used before the fix)."""
    return {b: JobContext(JOB_ID, b, BANKS, seed=SPEC.seed, params=dict(SPEC.params))
            for b in BANKS}


def agent_contexts(tmp_path: Path) -> dict[str, JobContext]:
    shard_key = secrets.token_bytes(32)
    contexts = {}
    for bank in BANKS:
        folder = tmp_path / bank
        folder.mkdir()
        contexts[bank] = bank_job_context(JOB_ID, bank, BANKS, SPEC, shard_key, folder)
    return contexts


@pytest.fixture(scope="module")
def tables() -> dict[str, LocalTable]:
    return make_tables()


def truth(tables: dict[str, LocalTable]) -> np.ndarray:
    return np.concatenate([tables[b].y for b in BANKS])


def test_positive_control_public_seeds_give_away_every_label(
    tables: dict[str, LocalTable],
) -> None:
    model = train(weakened_contexts(), tables)
    found = attack(SPEC, BANKS, model)
    assert found.row_counts == (ROWS, ROWS, ROWS)
    assert found.labels is not None
    recovered = int((found.labels == truth(tables)).sum())
    assert recovered == len(BANKS) * ROWS  # 150 of 150


def test_secret_sampling_leaves_the_attacker_at_chance(
    tables: dict[str, LocalTable], tmp_path: Path
) -> None:
    contexts = agent_contexts(tmp_path)
    model = train(contexts, tables)
    found = attack(SPEC, BANKS, model)
    assert found.row_counts is None  # not even the banks' row counts
    y = truth(tables)
    handed = attack(SPEC, BANKS, model, given_counts=(ROWS, ROWS, ROWS))
    assert handed.labels is not None
    accuracy = float((handed.labels == y).mean())
    majority = max(y.mean(), 1.0 - y.mean())
    assert accuracy <= majority + 0.05
    # the secrets are per job, per bank; the per-bank key sits in the bank's folder, 0600
    assert len({c.bank_secret for c in contexts.values()}) == len(BANKS)
    assert len({c.consortium_secret for c in contexts.values()}) == 1
    key_file = tmp_path / "bank_a" / SECRET_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = bank_job_context(JOB_ID, "bank_a", BANKS, SPEC, b"k" * 32, tmp_path / "bank_a")
    assert again.bank_secret == contexts["bank_a"].bank_secret  # a restart draws the same rows
    assert bank_sampling_key(tmp_path / "bank_a") == bank_sampling_key(tmp_path / "bank_a")


def test_bank_agents_always_sample_with_their_secrets(tmp_path: Path) -> None:
    """Over real mTLS gRPC, the model is the one the agents' secret-keyed contexts give, not the
    public derivation's; each bank's sampling key sits in its folder, mode 0600."""
    contract, paths = write_tables(tmp_path / "data", make_frames(rows=300))
    folder = new_consortium(tmp_path / "consortium", contract, key_bits=1024)
    spec = JobSpec("gbdt", {"n_estimators": 3, "max_depth": 2, "subsample": 0.6,
                            "colsample_bytree": 0.7, "min_child_samples": 50}, seed=4)
    with InProcessConsortium(folder, paths) as cons, cons.operator_client() as client:
        job_id = client.submit(spec)
        client.wait(job_id, timeout=300)
        model = client.fetch_artifacts(job_id)["model.json"]
    banks = tuple(sorted(paths))
    bundles = {b: load_bank_bundle(folder / "banks" / b) for b in banks}
    for bundle in bundles.values():
        assert (bundle.directory / SECRET_FILE).stat().st_mode & 0o777 == 0o600

    def reference(keyed: bool) -> bytes:
        trainers = {}
        for b in banks:
            ctx = (bank_job_context(job_id, b, banks, spec, bundles[b].shard_key,
                                    bundles[b].directory) if keyed
                   else JobContext(job_id, b, banks, spec.seed, dict(spec.params)))
            trainers[b] = create_trainer(spec, ctx, load_table(paths[b], contract))
        return run_encrypted(trainers, bundles[banks[0]].private_key).artifacts["model.json"]

    assert model == reference(keyed=True)
    assert model != reference(keyed=False)
