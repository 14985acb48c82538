"""Duplicated, delayed and reordered messages change nothing: every bank upload is sent again
(a duplicate), uploads are delayed by a random few milliseconds, and after each upload an old
one from an earlier step is delivered late. The job's model must be byte-identical to the
in-memory runner's (which the undisturbed distributed run equals), every duplicate is
acknowledged as one, and every late message is refused as a replay.

Real gRPC with mTLS on loopback; the aggregator and the bank agents run in this process.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import InProcessConsortium, local_reference, make_frames, new_consortium, write_tables

from fedtab.errors import ReplayError
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import Upload
from fedtab.transport.messages import UploadAck

GBDT = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "learning_rate": 0.3}


class Chaos:
    """Wraps each agent's ``client.upload``: random delay, a duplicate, a stale old upload."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def note(self, what: str, example: str) -> None:
        with self.lock:
            self.outcomes[what] += 1
            self.examples.setdefault(what, example)

    def wrap(self, agent: Any) -> None:
        send = agent.client.upload
        sent: list[Upload] = []

        def upload(item: Upload) -> UploadAck:
            with self.lock:
                delay = self.rng.uniform(0.0, 0.03)
            time.sleep(delay)  # delayed (and so reordered against the other banks)
            ack = send(item)
            try:
                again = send(item)  # the same message delivered twice
                assert again.duplicate, item.tag
                self.note("duplicate acknowledged", f"duplicate={again.duplicate}")
            except ReplayError as exc:  # the first delivery completed the step
                self.note("duplicate after commit refused", exc.one_line())
            old = [u for u in sent if u.tag.step_index < item.tag.step_index]
            if old:
                with self.lock:
                    stale = self.rng.choice(old)
                try:
                    send(stale)
                    raise AssertionError(f"late message accepted: {stale.tag}")
                except ReplayError as exc:
                    self.note("late message refused", exc.one_line())
            sent.append(item)
            return ack

        agent.client.upload = upload


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("chaos")
    contract, tables = write_tables(root / "data", make_frames(seed=8, rows=180))
    return new_consortium(root / "consortium", contract, key_bits=1024), tables


def test_duplicated_and_delayed_messages_change_nothing(world: tuple[Path, dict[str, Path]],
                                                        ) -> None:
    consortium, tables = world
    spec = JobSpec(kind="gbdt", params=GBDT, seed=6)
    chaos = Chaos(seed=1)
    with InProcessConsortium(consortium, tables, on_agent=chaos.wrap) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(spec)
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
        # The banks are still attached and serve the next job normally.
        second = client.submit(JobSpec(kind="profile"))
        assert client.wait(second, timeout=60).state == "done"
    assert final.state == "done"
    assert artifacts == local_reference(consortium, tables, spec, job_id)
    assert chaos.outcomes["duplicate acknowledged"] > 10
    assert chaos.outcomes["late message refused"] > 10
    for what, count in sorted(chaos.outcomes.items()):
        print(f"{what}: {count} (e.g. {chaos.examples[what]})")


def test_a_stopped_agent_stops_quietly(world: tuple[Path, dict[str, Path]]) -> None:
    """After ``stop()`` (SIGTERM in ``bank join``) closes the channel, the next call ends the
    agent as ``stopped`` instead of raising grpc's ValueError (regression: that ValueError was
    taken for a crash — traceback, and an ABORT attempted for the job)."""
    from bank_node.agent import BankAgent
    from fedtab.consortium import load_bank_bundle
    from fedtab.data.validate import load_table

    consortium, tables = world
    bundle = load_bank_bundle(consortium / "banks" / "bank_a")
    agent = BankAgent(bundle, load_table(tables["bank_a"], bundle.contract), "127.0.0.1:9")
    agent.stop()
    assert agent.run_until(None) == "stopped"
    agent.close()
