"""Benchmark federated logistic regression against local-only and centralized scikit-learn.

Usage: python scripts/bench_logreg.py [--json] [--key-bits 2048] [--C 1.0]
                                      [--class-weight balanced] [--data DIR]

Datasets (read-only, from ../shared/data or $FEDTAB_SHARED_DATA):
- Taiwan credit default, FATE's horizontal split: three banks (guest, host_1, host_2), common
  holdout ``default_credit_homo_test.csv``;
- ULB card fraud (``creditcard_union.csv``, label ``Class``): three banks by contiguous ``Time``
  ranges, a 20% stratified holdout per bank; the pooled holdout is the union of the banks'.

Per dataset it prints rounds to converge, seconds and wire bytes per round (real Paillier
encryption, homomorphic addition and decryption in one process), and holdout ROC-AUC of the
federated model, each bank's local-only model and the centralized model (scikit-learn on the
pooled training rows); with ``--json`` it prints one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from fedtab.crypto.keys import PrivateKey, generate_keypair
from fedtab.data.contract import LocalTable
from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.logreg.model import LogRegModel
from fedtab.logreg.trainer import LogRegTrainer
from fedtab.protocol.local_runner import run_encrypted
from fedtab.protocol.steps import JobContext
from fedtab.simulation.splits import split_banks


@dataclass(frozen=True)
class Consortium:
    """Banks' training tables, their own holdouts (may be empty) and the pooled holdout."""

    name: str
    train: dict[str, LocalTable]
    holdouts: dict[str, LocalTable]
    holdout: LocalTable


def default_data_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("FEDTAB_SHARED_DATA", default))


def load_taiwan(folder: Path) -> Consortium:
    parts = ("guest", "host_1", "host_2")
    frames = {p: pd.read_csv(folder / f"default_credit_homo_{p}.csv") for p in parts}
    contract = infer_contract(pd.concat(frames.values(), ignore_index=True), "y", "id")
    train = {p: to_local_table(df, contract) for p, df in frames.items()}
    holdout = to_local_table(pd.read_csv(folder / "default_credit_homo_test.csv"), contract)
    return Consortium("taiwan_credit_default", train, {}, holdout)


def load_ulb(path: Path) -> Consortium:
    table = pd.read_csv(path)
    splits = split_banks(table, "Class", 3, how="by-column:Time", holdout_fraction=0.2, seed=0)
    contract = infer_contract(pd.concat([s.train for s in splits], ignore_index=True), "Class")
    train = {s.name: to_local_table(s.train, contract) for s in splits}
    holdouts = {s.name: to_local_table(s.holdout, contract) for s in splits}
    pooled = pd.concat([s.holdout for s in splits], ignore_index=True)
    return Consortium("ulb_card_fraud", train, holdouts, to_local_table(pooled, contract))


class SklearnLogReg:
    """scikit-learn on given tables: their mean imputation, StandardScaler, L2 logreg."""

    def __init__(self, tables: list[LocalTable], params: dict[str, Any]) -> None:
        X = np.vstack([t.X for t in tables])
        y = np.concatenate([t.y for t in tables])
        means = np.nanmean(X, axis=0)
        self.fill_ = np.where(np.isfinite(means), means, 0.0)
        filled = np.where(np.isnan(X), self.fill_, X)
        self.scaler_ = StandardScaler().fit(filled)
        self.model_ = LogisticRegression(
            C=float(params.get("C", 1.0)), class_weight=params.get("class_weight"),
            tol=1e-8, max_iter=10_000,
        ).fit(self.scaler_.transform(filled), y)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), self.fill_, X)
        return np.asarray(self.model_.predict_proba(self.scaler_.transform(filled))[:, 1])


def auc(table: LocalTable, scores: np.ndarray) -> float:
    return float(roc_auc_score(table.y, scores))


def bench(consortium: Consortium, key: PrivateKey, params: dict[str, Any]) -> dict[str, Any]:
    names = tuple(sorted(consortium.train))
    trainers = {
        b: LogRegTrainer(JobContext("bench-logreg", b, names, 0, params), t)
        for b, t in consortium.train.items()
    }
    starts: list[tuple[str, float]] = []
    outcome = run_encrypted(
        trainers, key, progress=lambda _, req: starts.append((req.step_id, time.perf_counter()))
    )
    finished = time.perf_counter()
    ends = [t for _, t in starts[1:]] + [finished]
    newton_seconds = [
        end - begin for (step, begin), end in zip(starts, ends, strict=True)
        if step.startswith("newton/")
    ]
    stats = outcome.stats
    model_json = outcome.artifacts["model.json"]
    doc = json.loads(model_json)
    model = LogRegModel.from_json(model_json)
    newton = [s for s in stats.per_step if str(s["step_id"]).startswith("newton/")]

    central = SklearnLogReg(list(consortium.train.values()), params)
    rows = sum(t.n_rows for t in consortium.train.values())

    holdout = consortium.holdout
    local: dict[str, Any] = {}
    for bank, table in consortium.train.items():
        alone = SklearnLogReg([table], params)
        entry = {"pooled_holdout_auc": auc(holdout, alone.predict_proba(holdout.X))}
        own = consortium.holdouts.get(bank)
        if own is not None:
            entry["own_holdout_auc"] = auc(own, alone.predict_proba(own.X))
            entry["federated_own_holdout_auc"] = auc(own, model.predict_proba(own.X))
        local[bank] = {"rows": table.n_rows, "positives": int(table.y.sum()), **entry}

    steps = max(stats.steps, 1)
    coef_gap = float(np.max(np.abs(model.coef - central.model_.coef_[0])))
    return {
        "dataset": consortium.name,
        "banks": len(names),
        "rows": rows,
        "encoded_features": len(doc["encoded_features"]),
        "params": params,
        "rounds_total": stats.steps,
        "newton_rounds": len(newton),
        "newton_iterations": doc["n_iter"],
        "converged": doc["converged"],
        "seconds_total": stats.wall_seconds,
        "seconds_per_round": stats.wall_seconds / steps,
        "seconds_per_newton_round": float(np.mean(newton_seconds)) if newton_seconds else 0.0,
        "encrypt_seconds": stats.encrypt_seconds,
        "decrypt_seconds": stats.decrypt_seconds,
        "wire_bytes_total": stats.wire_bytes,
        "wire_bytes_per_round": stats.wire_bytes / steps,
        "wire_bytes_per_newton_round": (
            float(np.mean([float(s["wire_bytes"]) for s in newton])) if newton else 0.0
        ),
        "ciphertexts": stats.ciphertexts,
        "holdout_rows": holdout.n_rows,
        "auc_federated": auc(holdout, model.predict_proba(holdout.X)),
        "auc_centralized": auc(holdout, central.predict_proba(holdout.X)),
        "auc_local": local,
        "max_coef_gap_vs_centralized": coef_gap,
    }


def print_report(result: dict[str, Any]) -> None:
    r = result
    print(f"== {r['dataset']}: {r['banks']} banks, {r['rows']} training rows, "
          f"{r['encoded_features']} encoded features, params {r['params']}")
    print(f"  rounds: {r['rounds_total']} secure sums ({r['newton_rounds']} Newton rounds, "
          f"{r['newton_iterations']} Newton steps), converged={r['converged']}")
    print(f"  time: {r['seconds_total']:.2f} s total, {r['seconds_per_round']:.3f} s/round, "
          f"{r['seconds_per_newton_round']:.3f} s/Newton round "
          f"(encrypt {r['encrypt_seconds']:.2f} s, decrypt {r['decrypt_seconds']:.2f} s in all)")
    print(f"  wire: {r['wire_bytes_total'] / 1e6:.2f} MB total, "
          f"{r['wire_bytes_per_round'] / 1e3:.1f} kB/round, "
          f"{r['wire_bytes_per_newton_round'] / 1e3:.1f} kB/Newton round")
    print(f"  holdout ({r['holdout_rows']} rows) ROC-AUC: federated {r['auc_federated']:.4f}, "
          f"centralized {r['auc_centralized']:.4f}, "
          f"max |coef gap| {r['max_coef_gap_vs_centralized']:.1e}")
    for bank, entry in r["auc_local"].items():
        line = f"    local-only {bank} ({entry['rows']} rows, {entry['positives']} positives): "
        line += f"pooled holdout {entry['pooled_holdout_auc']:.4f}"
        if "own_holdout_auc" in entry:
            line += (f", own holdout {entry['own_holdout_auc']:.4f} "
                     f"(federated on it {entry['federated_own_holdout_auc']:.4f})")
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    parser.add_argument("--data", type=Path, default=default_data_dir())
    args = parser.parse_args(argv)

    params: dict[str, Any] = {"C": args.C}
    if args.class_weight != "none":
        params["class_weight"] = args.class_weight
    started = time.perf_counter()
    key = generate_keypair(args.key_bits, allow_small_for_tests=args.key_bits < 2048)
    keygen_seconds = time.perf_counter() - started

    loaders = [
        (args.data / "credit_default_taiwan", load_taiwan),
        (args.data / "ulb_creditcard" / "creditcard_union.csv", load_ulb),
    ]
    results = []
    for path, loader in loaders:
        if not path.exists():
            print(f"skipping {path}: not found", file=sys.stderr)
            continue
        results.append(bench(loader(path), key, params))
    if not results:
        print(f"no data under {args.data}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"key_bits": args.key_bits, "keygen_seconds": keygen_seconds,
                          "results": results}))
    else:
        print(f"Paillier key: {args.key_bits} bits (generated in {keygen_seconds:.1f} s)")
        for result in results:
            print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
