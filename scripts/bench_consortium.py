"""Time a job on the real distributed system: aggregator and three bank processes over mTLS gRPC.

Usage: python scripts/bench_consortium.py [--json] [--kind profile] [--params '{"k": v}']
       [--key-bits 2048] [--data PATH] [--workers 1]

The card-fraud table (``ulb_creditcard/creditcard_union.csv`` under the shared data folder, or
``--data``) is sorted by ``Time`` and cut into three banks of contiguous time ranges. A fresh
consortium (new keys) is created in a temporary folder, the processes are started with
``fedtab.simulation.cluster.LocalCluster`` and the job is submitted by the operator client.
Figures: key generation, start-up, job wall time (submit to artifacts), steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from fedtab.consortium import init_consortium, load_operator_bundle
from fedtab.data.infer import infer_contract
from fedtab.jobs import JobSpec
from fedtab.simulation.cluster import LocalCluster
from fedtab.transport.operator_client import OperatorClient

BANKS = ("bank_a", "bank_b", "bank_c")


def default_data() -> Path:
    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    root = Path(os.environ.get("FEDTAB_SHARED_DATA", root))
    return root / "ulb_creditcard" / "creditcard_union.csv"


def run(args: argparse.Namespace) -> dict[str, Any]:
    frame = pd.read_csv(args.data).sort_values("Time", kind="stable").reset_index(drop=True)
    parts = [frame.iloc[i * len(frame) // 3:(i + 1) * len(frame) // 3] for i in range(3)]
    contract = infer_contract(frame, label="Class")
    with tempfile.TemporaryDirectory(prefix="fedtab-bench-") as tmp:
        root = Path(tmp)
        paths = {}
        for bank, part in zip(BANKS, parts, strict=True):
            paths[bank] = root / f"{bank}.csv"
            part.to_csv(paths[bank], index=False)
        started = time.perf_counter()
        init_consortium(root / "consortium", contract, list(BANKS), key_bits=args.key_bits,
                        allow_small_key_for_tests=args.key_bits < 2048)
        keygen = time.perf_counter() - started
        spec = JobSpec(kind=args.kind, params=json.loads(args.params))
        with LocalCluster(root / "consortium", paths, state_dir=root / "state",
                          log_dir=root / "logs", workers=args.workers) as cluster:
            address = cluster.address or ""
            up = time.perf_counter()
            operator = load_operator_bundle(root / "consortium" / "operator")
            with OperatorClient(operator, address) as client:
                job_id = client.submit(spec)
                submitted = time.perf_counter()
                final = client.wait(job_id, timeout=args.timeout)
                artifacts = client.fetch_artifacts(job_id)
            done = time.perf_counter()
    return {
        "kind": args.kind,
        "rows": len(frame),
        "bank_rows": [len(p) for p in parts],
        "key_bits": args.key_bits,
        "keygen_seconds": keygen,
        "startup_seconds": up - started - keygen,
        "job_seconds": done - submitted,
        "aggregator_elapsed_seconds": final.elapsed_seconds,
        "steps": final.step_index,
        "traffic": final.traffic,
        "artifacts": sorted(artifacts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--kind", default="profile")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
