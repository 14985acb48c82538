"""Benchmark federated GBDT on the card-fraud table: cost per tree, crypto vs its floor, quality.

Usage: python scripts/bench_gbdt.py [--json] [--n-estimators N] [--key-bits B] [--data PATH]

The table (``ulb_creditcard/creditcard_union.csv`` under the shared data folder, or ``--data``)
is sorted by ``Time`` and cut into three banks of contiguous time ranges; each bank keeps a
stratified 20% holdout. The federated job (``run_encrypted``: real Paillier, one process) is
compared with each bank's local-only XGBoost model and with centralized XGBoost (hist) on the
pooled training rows, all with ``max_depth=6, learning_rate=0.1, max_bin=64``.

Crypto floor: the per-ciphertext encryption and decryption costs are measured in the same run on
the same key and encoding (just before and just after the job, averaged); floor = ciphertexts
encrypted x encrypt cost + ciphertexts decrypted x decrypt cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from fedtab.crypto import EncodingSpec, Encryptor, slots_per_plaintext  # noqa: E402
from fedtab.crypto.decryptor import Decryptor  # noqa: E402
from fedtab.crypto.keys import PrivateKey, generate_keypair  # noqa: E402
from fedtab.data.contract import LocalTable  # noqa: E402
from fedtab.data.infer import infer_contract  # noqa: E402
from fedtab.data.validate import to_local_table  # noqa: E402
from fedtab.gbdt.trainer import GBDTTrainer  # noqa: E402
from fedtab.protocol.local_runner import run_encrypted  # noqa: E402
from fedtab.protocol.steps import JobContext, SumRequest  # noqa: E402

BANKS = ("bank_a", "bank_b", "bank_c")
LABEL = "Class"


def default_data() -> Path:
    shared = os.environ.get("FEDTAB_SHARED_DATA")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "ulb_creditcard" / "creditcard_union.csv"


def load_banks(path: Path) -> tuple[dict[str, LocalTable], dict[str, LocalTable]]:
    """Three banks by contiguous ``Time`` ranges, each with a stratified 20% holdout."""
    frame = pd.read_csv(path).sort_values("Time", kind="stable").reset_index(drop=True)
    contract = infer_contract(frame, LABEL)
    train, holdout = {}, {}
    for name, rows in zip(BANKS, np.array_split(np.arange(len(frame)), len(BANKS)), strict=True):
        part = frame.iloc[rows]
        fit, test = train_test_split(part, test_size=0.2, stratify=part[LABEL], random_state=0)
        train[name] = to_local_table(fit, contract)
        holdout[name] = to_local_table(test, contract)
    return train, holdout


def crypto_unit_costs(key: PrivateKey, spec: EncodingSpec, samples: int) -> tuple[float, float]:
    """Seconds per ciphertext for encryption and for decryption with this key and encoding."""
    rng = np.random.default_rng(0)
    slots = slots_per_plaintext(spec, key.public)
    values = rng.uniform(-1.0, 1.0, size=samples * slots)
    with Encryptor(key.public) as encryptor, Decryptor(key) as decryptor:
        encryptor.encrypt(values[:slots], spec)  # warm-up (tables, caches)
        started = time.perf_counter()
        vector = encryptor.encrypt(values, spec)
        encrypt_cost = (time.perf_counter() - started) / len(vector.ciphertexts)
        started = time.perf_counter()
        decryptor.decrypt_plaintexts(list(vector.ciphertexts))
        decrypt_cost = (time.perf_counter() - started) / len(vector.ciphertexts)
    return encrypt_cost, decrypt_cost


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    train, holdout = load_banks(args.data)
    params = {"n_estimators": args.n_estimators, "max_depth": 6, "learning_rate": 0.1,
              "max_bin": 64}
    key_started = time.perf_counter()
    key = generate_keypair(args.key_bits, allow_small_for_tests=args.key_bits < 2048)
    key_seconds = time.perf_counter() - key_started
    trainers = {
        name: GBDTTrainer(JobContext("bench", name, BANKS, seed=0, params=params), table)
        for name, table in train.items()
    }
    spec = trainers["bank_a"].histogram_encoding
    costs_before = crypto_unit_costs(key, spec, args.floor_samples)
    step_marks: list[tuple[str, float, float]] = []

    def progress(_index: int, request: SumRequest) -> None:
        step_marks.append((request.step_id, time.perf_counter(), time.process_time()))

    wall0, cpu0 = time.perf_counter(), time.process_time()
    outcome = run_encrypted(trainers, key, progress=progress)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    step_marks.append(("end", wall0 + wall, cpu0 + cpu))
    stats = outcome.stats

    n_banks = len(BANKS)
    per_tree: dict[str, dict[str, float]] = {}
    for (step_id, w0, c0), (_, w1, c1), step in zip(
        step_marks[:-1], step_marks[1:], stats.per_step, strict=True
    ):
        tree = step_id.split("/")[1] if step_id.startswith("tree/") else "bins"
        row = per_tree.setdefault(tree, {"wall": 0.0, "cpu": 0.0, "ciphertexts": 0.0,
                                         "bytes": 0.0, "steps": 0.0})
        row["wall"] += w1 - w0
        row["cpu"] += c1 - c0
        row["ciphertexts"] += float(step["ciphertexts"])
        row["bytes"] += float(step["wire_bytes"])
        row["steps"] += 1
    trees = [v for k, v in per_tree.items() if k != "bins"]

    costs_after = crypto_unit_costs(key, spec, args.floor_samples)
    # the machine is shared: average the unit costs measured just before and just after
    enc_cost = (costs_before[0] + costs_after[0]) / 2
    dec_cost = (costs_before[1] + costs_after[1]) / 2
    decrypted = stats.ciphertexts / (n_banks + 1)
    encrypted = stats.ciphertexts - decrypted
    floor = encrypted * enc_cost + decrypted * dec_cost
    crypto = stats.encrypt_seconds + stats.add_seconds + stats.decrypt_seconds

    model = trainers["bank_a"].model()
    pooled_X = np.concatenate([train[n].X for n in BANKS])
    pooled_y = np.concatenate([train[n].y for n in BANKS])
    hold_X = np.concatenate([holdout[n].X for n in BANKS])
    hold_y = np.concatenate([holdout[n].y for n in BANKS])
    xgb_params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6,
                  "eta": 0.1, "max_bin": 64, "nthread": 1, "seed": 0}
    central = xgb.train(xgb_params, xgb.DMatrix(pooled_X, pooled_y), args.n_estimators)
    quality: dict[str, Any] = {
        "pooled_holdout": {
            "federated": scores(hold_y, model.predict_proba(hold_X)),
            "central_xgboost": scores(hold_y, central.predict(xgb.DMatrix(hold_X))),
        },
        "banks": {},
    }
    for name in BANKS:
        local = xgb.train(xgb_params, xgb.DMatrix(train[name].X, train[name].y),
                          args.n_estimators)
        h = holdout[name]
        quality["banks"][name] = {
            "holdout_rows": h.n_rows,
            "holdout_frauds": int(h.y.sum()),
            "federated": scores(h.y, model.predict_proba(h.X)),
            "local_xgboost": scores(h.y, local.predict(xgb.DMatrix(h.X))),
            "central_xgboost": scores(h.y, central.predict(xgb.DMatrix(h.X))),
            "local_xgboost_on_pooled_holdout": scores(hold_y, local.predict(xgb.DMatrix(hold_X))),
        }
    banks_q = quality["banks"].values()
    fed_pr_banks = float(np.mean([b["federated"]["pr_auc"] for b in banks_q]))
    local_pr_pooled = float(np.mean(
        [b["local_xgboost_on_pooled_holdout"]["pr_auc"] for b in banks_q]))
    local_pr_banks = float(np.mean([b["local_xgboost"]["pr_auc"] for b in banks_q]))
    pool = quality["pooled_holdout"]
    n_trees = max(1, len(trees))
    return {
        "config": {"n_estimators": args.n_estimators, "key_bits": args.key_bits,
                   "params": params, "train_rows": {n: train[n].n_rows for n in BANKS},
                   "hist_encoding": spec.to_dict()},
        "key_generation_seconds": key_seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "steps": stats.steps,
        "ciphertexts": stats.ciphertexts,
        "wire_bytes": stats.wire_bytes,
        "per_tree": {
            "wall_seconds": sum(t["wall"] for t in trees) / n_trees,
            "cpu_seconds": sum(t["cpu"] for t in trees) / n_trees,
            "ciphertexts": sum(t["ciphertexts"] for t in trees) / n_trees,
            "wire_bytes": sum(t["bytes"] for t in trees) / n_trees,
            "steps": sum(t["steps"] for t in trees) / n_trees,
            "nodes": float(np.mean([t.n_nodes for t in model.trees])),
        },
        "bins_step": per_tree.get("bins", {}),
        "crypto": {
            "encrypt_seconds": stats.encrypt_seconds,
            "add_seconds": stats.add_seconds,
            "decrypt_seconds": stats.decrypt_seconds,
            "encrypt_cost_per_ciphertext": enc_cost,
            "decrypt_cost_per_ciphertext": dec_cost,
            "unit_costs_before_after": [list(costs_before), list(costs_after)],
            "floor_seconds": floor,
            "crypto_over_floor": crypto / floor if floor > 0 else float("nan"),
            "non_crypto_share_of_wall": (wall - crypto) / wall,
        },
        "quality": quality,
        "targets": {
            "roc_auc_within_0.005_of_central": abs(
                pool["federated"]["roc_auc"] - pool["central_xgboost"]["roc_auc"]) <= 0.005,
            "pr_auc_within_0.01_of_central": abs(
                pool["federated"]["pr_auc"] - pool["central_xgboost"]["pr_auc"]) <= 0.01,
            "federated_pr_auc_on_banks_mean": fed_pr_banks,
            "local_pr_auc_on_banks_mean": local_pr_banks,
            "federated_beats_local_mean": fed_pr_banks > local_pr_banks,
            "local_pr_auc_on_pooled_holdout_mean": local_pr_pooled,
            "federated_beats_local_on_pooled_holdout": (
                pool["federated"]["pr_auc"] > local_pr_pooled),
            "crypto_within_1.5x_floor": floor > 0 and crypto <= 1.5 * floor,
            "non_crypto_at_most_25pct": (wall - crypto) <= 0.25 * wall,
        },
    }


def print_report(r: dict[str, Any]) -> None:
    t, c = r["per_tree"], r["crypto"]
    print(f"federated GBDT, {r['config']['n_estimators']} trees, "
          f"{r['config']['key_bits']}-bit key, banks {r['config']['train_rows']}")
    print(f"wall {r['wall_seconds']:.1f} s, cpu {r['cpu_seconds']:.1f} s, "
          f"{r['steps']} steps, {r['ciphertexts']} ciphertexts, {r['wire_bytes'] / 1e6:.1f} MB")
    print(f"per tree: wall {t['wall_seconds']:.2f} s, cpu {t['cpu_seconds']:.2f} s, "
          f"{t['ciphertexts']:.0f} ciphertexts, {t['wire_bytes'] / 1e6:.2f} MB, "
          f"{t['steps']:.1f} steps, {t['nodes']:.1f} nodes")
    print(f"crypto: encrypt {c['encrypt_seconds']:.1f} s, decrypt {c['decrypt_seconds']:.1f} s, "
          f"add {c['add_seconds']:.2f} s; floor {c['floor_seconds']:.1f} s "
          f"(enc {c['encrypt_cost_per_ciphertext'] * 1e3:.2f} ms/ct, "
          f"dec {c['decrypt_cost_per_ciphertext'] * 1e3:.2f} ms/ct); "
          f"crypto/floor {c['crypto_over_floor']:.2f}, "
          f"non-crypto {100 * c['non_crypto_share_of_wall']:.1f}% of wall")
    q = r["quality"]
    for model_name, s in q["pooled_holdout"].items():
        print(f"pooled holdout {model_name:16s} ROC-AUC {s['roc_auc']:.4f} "
              f"PR-AUC {s['pr_auc']:.4f}")
    for bank, b in q["banks"].items():
        cells = "  ".join(f"{m} {b[m]['roc_auc']:.4f}/{b[m]['pr_auc']:.4f}"
                          for m in ("federated", "local_xgboost", "central_xgboost"))
        print(f"{bank} ({b['holdout_frauds']} frauds) ROC/PR: {cells}")
        on_pooled = b["local_xgboost_on_pooled_holdout"]
        print(f"  {bank} local model on the pooled holdout ROC/PR "
              f"{on_pooled['roc_auc']:.4f}/{on_pooled['pr_auc']:.4f}")
    for name, value in r["targets"].items():
        print(f"target {name}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--floor-samples", type=int, default=200,
                        help="ciphertexts used to measure per-ciphertext costs")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"data file not found: {args.data} (set FEDTAB_SHARED_DATA)", file=sys.stderr)
        return 2
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
