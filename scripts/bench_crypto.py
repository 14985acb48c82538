"""Benchmark fedtab's packed Paillier secure sum against python-paillier (``phe``) per value.

Usage: python scripts/bench_crypto.py [--key-bits 2048] [--workers 1] [--length 40000] [--json]

Everything is measured in one run on the same key: ``phe``'s own per-value ``encrypt()`` and
``decrypt()`` (its EncodedNumber path, one ciphertext per value) and fedtab's packed DJN
encryption, CRT decryption (with decoding and headroom checks), homomorphic add (with full
ciphertext validation) in values per second, and wire bytes per value. Rates are best-of-
``--repeats`` wall-clock figures (the machine is shared, so ratios matter more than absolutes).
Each round measures every operation once, interleaved (phe, fedtab with one worker, fedtab
with N workers), so load from other processes hits all of them alike; ``*_cpu_time`` ratios use
this process's CPU time instead of wall time (one-worker figures run in-process). With
``--workers N > 1`` the N-worker pool is measured too and the scaling ratio reported.
``add_values_per_s`` counts value additions: adding P vectors of L values is (P - 1) * L.

This is a benchmark script, never a timed unit test. ``phe`` (GPLv3) is used only here and in
cross-check tests, never in fedtab's engine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import numpy as np
import phe

from fedtab.crypto import (
    EncodingSpec,
    EncryptedVector,
    Encryptor,
    add_encrypted,
    encrypted_vector_to_bytes,
    quantisation_bound,
    slot_bits,
    slots_per_plaintext,
)
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.keys import generate_keypair

PARTIES = 3


class Timer:
    """Best-of-N wall-clock and CPU times per metric, measured interleaved across rounds."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)``, keep the best times under ``name`` and return its result."""
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.wall[name] = min(self.wall.get(name, float("inf")), wall)
        self.cpu[name] = min(self.cpu.get(name, float("inf")), cpu)
        return result


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    spec = EncodingSpec(frac_bits=24, clip=2.0**20, max_summands=16)
    rng = np.random.default_rng(args.seed)
    key = generate_keypair(args.key_bits, allow_small_for_tests=args.key_bits < 2048)
    public = key.public
    vectors = [rng.uniform(-spec.clip, spec.clip, args.length) for _ in range(PARTIES)]
    floats = vectors[0][: args.phe_values].tolist()
    phe_pub = phe.PaillierPublicKey(public.n)
    phe_priv = phe.PaillierPrivateKey(phe_pub, key.p, key.q)
    timer = Timer()
    with ExitStack() as stack:
        encryptors = {1: stack.enter_context(Encryptor(public))}
        decryptors = {1: stack.enter_context(Decryptor(key))}
        if args.workers > 1:
            encryptors[args.workers] = stack.enter_context(Encryptor(public, workers=args.workers))
            decryptors[args.workers] = stack.enter_context(Decryptor(key, workers=args.workers))
        crt = stack.enter_context(Encryptor(public, private_key=key, method="crt"))
        for enc in encryptors.values():
            enc.wait_ready()
            enc.encrypt(vectors[0][:2000], spec)  # warm-up
        for dec in decryptors.values():
            dec.wait_ready()

        def phe_encrypt() -> list[Any]:
            return [phe_pub.encrypt(v) for v in floats]

        def phe_decrypt(cts: list[Any]) -> list[float]:
            return [phe_priv.decrypt(c) for c in cts]

        def encrypt_all(enc: Encryptor) -> list[EncryptedVector]:
            return [enc.encrypt(v, spec) for v in vectors]

        for _ in range(args.repeats):
            phe_cts = timer.run("phe_encrypt", phe_encrypt)
            if not np.allclose(timer.run("phe_decrypt", phe_decrypt, phe_cts), floats):
                raise RuntimeError("phe round trip failed")
            parts: list[EncryptedVector] = []
            for w, enc in encryptors.items():
                parts = timer.run(f"encrypt_{w}", encrypt_all, enc)
            total = timer.run("add", add_encrypted, parts, public)
            for w, dec in decryptors.items():
                decoded = timer.run(f"decrypt_{w}", dec.decrypt, total)
            timer.run("crt_encrypt", crt.encrypt, vectors[0][:4000], spec)
    exact = np.sum(vectors, axis=0)
    wall, cpu = timer.wall, timer.cpu
    n_phe, length = len(floats), args.length
    enc1 = PARTIES * length / wall["encrypt_1"]
    dec1 = length / wall["decrypt_1"]
    result: dict[str, Any] = {
        "key_bits": args.key_bits,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "length": length,
        "parties": PARTIES,
        "repeats": args.repeats,
        "encoding": spec.to_dict(),
        "slot_bits": slot_bits(spec),
        "slots_per_plaintext": slots_per_plaintext(spec, public),
        "quantisation_bound_per_value_per_summand": quantisation_bound(spec),
        "error_bound_for_sum": PARTIES * quantisation_bound(spec),
        "max_abs_error": float(np.max(np.abs(decoded - exact))),
        "phe_encrypt_values_per_s": n_phe / wall["phe_encrypt"],
        "phe_decrypt_values_per_s": n_phe / wall["phe_decrypt"],
        "phe_wire_bytes_per_value": 2 * ((public.bits + 7) // 8),
        "encrypt_values_per_s_1worker": enc1,
        "decrypt_values_per_s_1worker": dec1,
        "crt_encrypt_values_per_s_1worker": 4000 / wall["crt_encrypt"],
        "encrypt_vs_phe": enc1 / (n_phe / wall["phe_encrypt"]),
        "decrypt_vs_phe": dec1 / (n_phe / wall["phe_decrypt"]),
        "encrypt_vs_phe_cpu_time": (PARTIES * length / cpu["encrypt_1"])
        / (n_phe / cpu["phe_encrypt"]),
        "decrypt_vs_phe_cpu_time": (length / cpu["decrypt_1"]) / (n_phe / cpu["phe_decrypt"]),
        "add_values_per_s": (PARTIES - 1) * length / wall["add"],
        "wire_bytes_per_value": len(encrypted_vector_to_bytes(total)) / length,
        "encrypt_values_per_s": PARTIES * length / wall[f"encrypt_{args.workers}"],
        "decrypt_values_per_s": length / wall[f"decrypt_{args.workers}"],
    }
    if args.workers > 1:
        result["encrypt_scaling"] = result["encrypt_values_per_s"] / enc1
        result["decrypt_scaling"] = result["decrypt_values_per_s"] / dec1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--length", type=int, default=40_000, help="values per party vector")
    parser.add_argument("--phe-values", type=int, default=60, help="values for phe's rates")
    parser.add_argument("--repeats", type=int, default=3, choices=range(1, 100), metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    result = _measure(args)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    width = max(len(k) for k in result)
    for name, value in result.items():
        shown = f"{value:,.6g}" if isinstance(value, float) else value
        print(f"{name:<{width}}  {shown}")


if __name__ == "__main__":
    main()
