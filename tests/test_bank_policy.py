"""A bank's own limits: privacy floor, models it will score, what its refusals reveal."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import InProcessConsortium, make_frames, new_consortium, write_tables

from bank_node.policy import BankPolicy, PolicyRefusal, model_digest
from fedtab.errors import ConfigError, JobFailedError
from fedtab.jobs import JobSpec


def test_floor_refuses_jobs_that_release_smaller_groups() -> None:
    policy = BankPolicy(privacy_floor=50)
    policy.check(JobSpec(kind="gbdt", params={"min_child_samples": 50}))
    policy.check(JobSpec(kind="gbdt"))  # the trainer's default (50) meets the floor
    policy.check(JobSpec(kind="profile"))
    with pytest.raises(PolicyRefusal, match="min_child_samples = 1, below this bank's privacy"):
        policy.check(JobSpec(kind="gbdt", params={"min_child_samples": 1}))
    with pytest.raises(ConfigError, match="must be an integer"):
        policy.check(JobSpec(kind="gbdt", params={"min_child_samples": "1"}))


def test_models_are_scored_only_when_trained_here_or_approved(tmp_path: Path) -> None:
    approved = tmp_path / "approved.json"
    approved.write_text('{"learner": {}}')
    policy = BankPolicy.for_bundle(tmp_path, 50, [approved])
    policy.check(JobSpec(kind="evaluate", params={"model_json": approved.read_text()}))
    trained = b'{"kind": "logreg", "coef": [1.0]}'
    unknown = JobSpec(kind="evaluate", params={"model_json": trained.decode()})
    with pytest.raises(PolicyRefusal, match="not trained by this consortium"):
        policy.check(unknown)
    policy.record_result({"model.json": trained})
    policy.check(unknown)
    # The record survives a restart of the bank (it lives in the bank's folder).
    again = BankPolicy.for_bundle(tmp_path, 50)
    assert model_digest(trained) in again.approved_models
    again.check(unknown)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("policy")
    contract, tables = write_tables(root / "data", make_frames(rows=300))
    return new_consortium(root / "consortium", contract, key_bits=1024), tables


def test_a_job_below_the_floor_is_refused_and_says_why(consortium) -> None:
    folder, tables = consortium
    with InProcessConsortium(folder, tables) as cons, cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="gbdt", params={"min_child_samples": 2}))
        with pytest.raises(JobFailedError, match="below this bank's privacy floor of 50"):
            client.wait(job_id, timeout=60)


def test_refusals_about_a_banks_data_reveal_no_figures(consortium) -> None:
    """A job the bank's data cannot serve fails, but its row count stays in the bank's log."""
    folder, tables = consortium
    with InProcessConsortium(folder, tables) as cons, cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="gbdt", params={"max_rows_per_bank": 10}))
        with pytest.raises(JobFailedError) as failure:
            client.wait(job_id, timeout=60)
    message = str(failure.value)
    assert "DataContractError at bank" in message and "details in that bank's log" in message
    reason = message.split("DataContractError", 1)[1]
    assert not any(char.isdigit() for char in reason), message


def test_a_model_the_banks_trained_can_be_evaluated_without_approval(
    consortium, tmp_path: Path
) -> None:
    from fedtab.consortium_eval.model_param import embed_model
    from fedtab.data.validate import load_table

    folder, tables = consortium

    def give_holdout(agent) -> None:  # the training table doubles as holdout here
        agent.holdout = load_table(tables[agent.name], agent.bundle.contract)

    with InProcessConsortium(folder, tables, on_agent=give_holdout) as cons, \
            cons.operator_client() as client:
        trained = client.submit(JobSpec(kind="gbdt", params={"n_estimators": 2, "max_depth": 2}))
        client.wait(trained, timeout=120)
        (tmp_path / "model.json").write_bytes(client.fetch_artifacts(trained)["model.json"])
        job = tmp_path / "evaluate.toml"
        job.write_text('[job]\nkind = "evaluate"\n[params]\nmodel = "model.json"\n')
        evaluated = client.submit(embed_model(JobSpec.load(job), job))
        assert client.wait(evaluated, timeout=120).state == "done"


def test_a_logreg_job_is_refused_by_a_bank_whose_floor_exceeds_the_consortium(consortium) -> None:
    """Consortium-wide figures are checked against the bank's floor before it proposes them."""
    folder, tables = consortium

    def strict(agent) -> None:
        if agent.name == "bank_b":
            agent.policy = BankPolicy(privacy_floor=10**6)

    with InProcessConsortium(folder, tables, on_agent=strict) as cons, \
            cons.operator_client() as client:
        # min_group_rows meets bank_b's floor (else its policy refuses at once, issue 11)
        job_id = client.submit(JobSpec(kind="logreg", params={"min_group_rows": 10**6}))
        with pytest.raises(JobFailedError, match="PrivacyError at bank bank_b") as failure:
            client.wait(job_id, timeout=120)
    assert not any(char.isdigit() for char in str(failure.value).split("PrivacyError")[1])
