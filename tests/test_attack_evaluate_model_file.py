"""Issue 11 item 7, run as the attacker: a job file that makes ``fedtab run`` ship a local file.

The attacker's view: they write an evaluate job file (and may place files and symlinks next to
it) that the operator runs with ``fedtab run OPERATOR_DIR JOB``. Its ``model`` names the
operator's TLS private key by absolute path, by ``../`` and through a symlink inside the job
file's folder. Each is refused with one line, exit 2, before anything is sent: the
``--aggregator`` address is a loopback listener that counts connections, and none arrives.
A model trained under another data contract, and a JSON file that is not a model, are refused
the same way. Positive control: the embedding as it was before the fix (kept here verbatim as
``unchecked_embed``) ships the key's text inside the job spec for the same three job files; the
aggregator's shape check now refuses such a spec too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness import BANKS, make_frames, new_consortium, write_tables
from test_bad_tables_join import ConnectionCounter

from aggregator.coordinator import Coordinator
from fedtab.cli.main import cli
from fedtab.cli.run_cmd import prepared_spec
from fedtab.consortium import TLS_KEY_FILE, load_aggregator_bundle
from fedtab.data.validate import load_table
from fedtab.errors import ConfigError
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext
from fedtab.transport.messages import Caller


@pytest.fixture
def listener() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluate-file")
    contract, tables = write_tables(root / "data", make_frames(seed=5, rows=120))
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    spec = JobSpec(kind="logreg", params={"C": 1.0})
    trainers = {b: create_trainer(spec, JobContext("train", b, BANKS, 0, dict(spec.params)),
                                  load_table(p, contract)) for b, p in tables.items()}
    model = run_plaintext(trainers).artifacts["model.json"]
    return {"root": root, "consortium": consortium, "contract": contract, "model": model}


def unchecked_embed(spec: JobSpec, job_file: Path) -> JobSpec:
    """The embedding before the fix (issue 11 item 7): any path, any UTF-8 file, unparsed."""
    params = dict(spec.params)
    path = Path(params.pop("model"))
    if not path.is_absolute():
        path = Path(job_file).resolve().parent / path
    data = path.read_bytes()
    params.update(model_json=data.decode("utf-8"), model_name=path.name,
                  model_sha256=hashlib.sha256(data).hexdigest())
    return replace(spec, params=params)


def job_file(folder: Path, model: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    job = folder / "evaluate.toml"
    job.write_text(f'[job]\nkind = "evaluate"\n[params]\nmodel = {json.dumps(model)}\n')
    return job


def attack_jobs(world: dict[str, Any], where: Path) -> dict[str, Path]:
    """The three job files naming the operator's TLS key, each in its own folder."""
    key = (world["consortium"] / "operator" / TLS_KEY_FILE).resolve()
    (where / "dotdot").mkdir(parents=True)
    relative = os.path.relpath(key, where / "dotdot")  # ../../../evaluate-file0/...
    linked = job_file(where / "symlink", "model.json")
    (linked.parent / "model.json").symlink_to(key)
    return {"absolute path": job_file(where / "absolute", str(key)),
            "../ path": job_file(where / "dotdot", relative),
            "symlink out of the folder": linked}


def fedtab_run(world: dict[str, Any], job: Path, address: str) -> Any:
    operator = str(world["consortium"] / "operator")
    return CliRunner().invoke(cli, ["run", operator, str(job), "--aggregator", address,
                                    "--timeout", "5"])


def test_a_job_file_cannot_ship_the_operators_tls_key(world: dict[str, Any], tmp_path: Path,
                                                      listener: ConnectionCounter) -> None:
    key_text = (world["consortium"] / "operator" / TLS_KEY_FILE).read_text()
    assert "PRIVATE KEY" in key_text
    jobs = attack_jobs(world, tmp_path / "jobs")
    outcomes = {}
    for case, job in jobs.items():
        result = fedtab_run(world, job, listener.address)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, (case, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: ConfigError"), (case, lines)
        assert "refused" in lines[0] and "PRIVATE KEY" not in lines[0], (case, lines)
        outcomes[case] = lines[0]
    assert "no absolute path, no '..'" in outcomes["absolute path"]
    assert "no absolute path, no '..'" in outcomes["../ path"]
    assert "leads out of the job file's folder" in outcomes["symlink out of the folder"]
    assert listener.count == 0  # refused before anything connected

    # Positive control: the embedding as it was ships the key to every bank and the aggregator.
    agg = load_aggregator_bundle(world["consortium"] / "aggregator")
    coordinator = Coordinator("c", tuple(agg.config.banks), agg.public_key)
    for case, job in jobs.items():
        shipped = unchecked_embed(JobSpec.load(job), job)
        assert shipped.params["model_json"] == key_text, case
        # ... and the aggregator, which now checks an embedded model's shape, refuses it.
        with pytest.raises(ConfigError, match="not the JSON text of a logreg or XGBoost model"
                           ) as refused:
            coordinator.submit(Caller("operator", "operator"), shipped)
        assert "PRIVATE KEY" not in str(refused.value)
    for line in outcomes.values():
        print(line)


def test_only_a_model_under_the_consortiums_contract_is_embedded(
        world: dict[str, Any], tmp_path: Path, listener: ConnectionCounter) -> None:
    folder = tmp_path / "jobs"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "ours.json").write_bytes(world["model"])
    doc = json.loads(world["model"])
    doc["contract"]["label"] = "is_fraud"  # trained under another consortium's contract
    (folder / "models" / "theirs.json").write_text(json.dumps(doc))
    (folder / "notes.json").write_text('{"hello": "not a model"}')
    (folder / "inside.json").symlink_to(folder / "models" / "ours.json")  # stays inside

    refused = {
        "another contract": ("models/theirs.json", "trained under another data contract"),
        "JSON, not a model": ("notes.json", "neither a fedtab logreg model"),
        "'..' even when it stays inside": ("models/../models/ours.json", "no '..'"),
    }
    for case, (model, message) in refused.items():
        result = fedtab_run(world, _job_in(folder, model), listener.address)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, (case, result.output)
        assert message in lines[0], (case, lines)
    embedded = folder / "embedded.toml"  # a model pasted into the job file is checked too
    embedded.write_text('[job]\nkind = "evaluate"\n[params]\nmodel_json = '
                        f'{json.dumps(json.dumps(doc))}\n')
    result = fedtab_run(world, embedded, listener.address)
    assert result.exit_code == 2 and "another data contract" in result.output, result.output
    assert listener.count == 0

    # Positive controls: a model of ours, directly or through a symlink that stays inside the
    # folder, is embedded byte for byte; without the contract (before the operator folder is
    # read) another contract's model still loads, the banks refuse it.
    contract = world["contract"]
    for model in ("models/ours.json", "inside.json"):
        spec = prepared_spec(_job_in(folder, model), contract)
        assert spec.params["model_json"].encode() == world["model"]
    assert "model_json" in prepared_spec(_job_in(folder, "models/theirs.json")).params


def _job_in(folder: Path, model: str) -> Path:
    job = folder / f"job-{hashlib.sha256(model.encode()).hexdigest()[:8]}.toml"
    job.write_text(f'[job]\nkind = "evaluate"\n[params]\nmodel = {json.dumps(model)}\n')
    return job
