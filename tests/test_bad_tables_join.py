"""`fedtab bank join` on the malformed-table corpus of ``test_schema_cmd``: one line, non-zero
exit, no traceback, nothing sent, nothing written.

The corpus (31 single-edit tables: missing/extra/duplicate columns, wrong types, bad labels,
empty file, header only, infinities, values far outside the contract's ranges, wrong delimiter
or encoding, truncated Parquet, ...) is imported from ``test_schema_cmd``, not copied. The
bank's ``--aggregator`` is a plain TCP listener owned by the test that counts connection
attempts: a join that sends anything must connect first. A positive control shows that the
same listener does see a join whose table is good.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import ServiceProcess, new_consortium
from test_schema_cmd import CASES, Case, assert_one_line_error, contract, good_frame, write_csv

from fedtab.cli.main import cli
from fedtab.errors import DataContractError


class ConnectionCounter:
    """A TCP listener on a loopback port that accepts, counts and closes every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def bank_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consortium over the corpus's contract; returns bank_a's bundle folder."""
    root = tmp_path_factory.mktemp("join-corpus")
    consortium = new_consortium(root / "consortium", contract(), key_bits=1024)
    return consortium / "banks" / "bank_a"


@pytest.fixture(scope="module")
def listener() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (to prove nothing changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_join_refuses_malformed_table_and_sends_nothing(tmp_path: Path, bank_folder: Path,
                                                        listener: ConnectionCounter,
                                                        case: Case) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = case.make(folder)
    before_data, before_bundle = tree_digest(folder), tree_digest(bank_folder)
    connections = listener.count
    result = CliRunner().invoke(cli, ["bank", "join", str(bank_folder), "--data", str(data),
                                      "--aggregator", listener.address])
    line = assert_one_line_error(result, case.expect)
    assert line.startswith("error: DataContractError: ")
    assert result.exit_code == DataContractError.exit_code
    time.sleep(0.05)  # let the listener thread count a late connection, were there one
    assert listener.count == connections, f"{case.name}: bank join connected to the aggregator"
    assert tree_digest(folder) == before_data  # nothing half-written next to the table
    assert tree_digest(bank_folder) == before_bundle  # nor in the bank's folder


def test_join_as_a_process_on_a_bad_table(tmp_path: Path, bank_folder: Path,
                                          listener: ConnectionCounter) -> None:
    """The real command: exit code 5 and one line on stderr; and the positive control — the same
    listener sees a join with a good table connect."""
    bad = next(c for c in CASES if c.name == "label_not_binary").make(tmp_path)
    before = listener.count
    process = ServiceProcess("join-bad", ["bank", "join", str(bank_folder), "--data", str(bad),
                                          "--aggregator", listener.address], tmp_path / "logs")
    assert process.process.wait(timeout=60) == DataContractError.exit_code
    lines = process.output().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DataContractError: "), lines
    assert "column 'fraud', row 5: label 2 is not 0 or 1" in lines[0]
    assert listener.count == before

    good = write_csv(good_frame(), tmp_path / "good.csv")
    control = ServiceProcess("join-good", ["bank", "join", str(bank_folder), "--data", str(good),
                                           "--aggregator", listener.address], tmp_path / "logs")
    try:
        deadline = time.monotonic() + 60
        while listener.count == before:
            assert control.alive(), control.output()
            assert time.monotonic() < deadline, "the positive control never connected"
            time.sleep(0.05)
    finally:
        control.stop()
    assert "matches the contract" in control.output()
