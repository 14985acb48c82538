"""Issue 11 item 9 (key sizes): ``bank join`` and ``aggregator serve`` refuse a consortium key
under 2048 bits with one line and a non-zero exit, before listening or connecting.

The consortium here has a real 1024-bit key (created with the test-only permission). The
commands run as real processes without the opt-in: each exits 3 with ``error:
KeyMaterialError: ...``; the bank never connects (a TCP listener counts attempts) and the
aggregator never writes its port. Positive control: with ``FEDTAB_ALLOW_SMALL_KEYS=1`` (the
tests' opt-in) the same bank connects and the same aggregator listens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import (
    REPO,
    SINGLE_THREAD_ENV,
    ServiceProcess,
    make_frames,
    new_consortium,
    wait_for_file,
    write_tables,
)
from test_bad_tables_join import ConnectionCounter

REFUSAL = ("error: KeyMaterialError: the consortium's Paillier key has 1024 bits, below the "
           "minimum of 2048")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("keysize")
    contract, tables = write_tables(root / "data", make_frames(rows=60))
    return {"consortium": new_consortium(root / "consortium", contract, key_bits=1024),
            "tables": tables, "root": root}


def fedtab(args: list[str], opt_in: bool, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``fedtab`` as a process, with or without the small-key opt-in."""
    env = {k: v for k, v in os.environ.items() if k != "FEDTAB_ALLOW_SMALL_KEYS"}
    if opt_in:
        env["FEDTAB_ALLOW_SMALL_KEYS"] = "1"
    return subprocess.run([sys.executable, "-m", "fedtab.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env={**env, **SINGLE_THREAD_ENV}, cwd=REPO,
                          check=False)


def one_error(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_bank_join_refuses_a_small_key(world: dict[str, Any]) -> None:
    listener = ConnectionCounter()
    try:
        join = ["bank", "join", str(world["consortium"] / "banks" / "bank_a"), "--data",
                str(world["tables"]["bank_a"]), "--aggregator", listener.address,
                "--give-up-after", "1"]
        refused = fedtab(join, opt_in=False)
        assert refused.returncode == 3
        assert one_error(refused).startswith(REFUSAL)
        assert listener.count == 0  # refused before connecting
        allowed = fedtab(join, opt_in=True)  # the listener speaks no TLS: gives up, exit 8
        assert allowed.returncode == 8, allowed.stderr
        assert listener.count >= 1
    finally:
        listener.close()


def test_aggregator_serve_refuses_a_small_key(world: dict[str, Any], tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    serve = ["aggregator", "serve", str(world["consortium"] / "aggregator"), "--listen",
             "127.0.0.1:0", "--port-file", str(port_file)]
    refused = fedtab(serve, opt_in=False)
    assert refused.returncode == 3
    assert one_error(refused).startswith(REFUSAL)
    assert not port_file.exists()  # it never listened
    allowed = ServiceProcess("aggregator-small-key", serve, tmp_path / "logs",
                             env={"FEDTAB_ALLOW_SMALL_KEYS": "1"})
    try:
        assert int(wait_for_file(port_file, allowed)) > 0
    finally:
        allowed.stop()
