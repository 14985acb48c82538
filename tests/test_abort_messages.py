"""Issue 11 item 5: a bank's refusal tells the aggregator no figure about its data.

The attack: the operator (or the aggregator) submits a job the bank's data cannot serve and
reads the failure message, which used to carry ``this bank has 337 rows but the job declares
max_rows_per_bank=10``. Here every job kind is refused for a data reason through the real path
(in-process aggregator and bank agents over mTLS gRPC on loopback); what the operator and the
aggregator see (the job's failure message, the aggregator's log) carries no digit in the bank's
reason and none of the bank's figures. Positive control: the bank's own log line names the
figure, so the figure was there to leak.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from harness import InProcessConsortium, make_frames, new_consortium, write_tables

from fedtab.data.contract import LocalTable
from fedtab.data.validate import load_table
from fedtab.errors import JobFailedError
from fedtab.jobs import JobSpec

ROWS = {"bank_a": 300, "bank_b": 337, "bank_c": 374}  # make_frames(rows=300): 300 + 37 * i
OUTLIER = 987654321.0  # a value far outside the contract's range of "amount"


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("aborts")
    contract, tables = write_tables(root / "data", make_frames(rows=300))
    return new_consortium(root / "consortium", contract, key_bits=1024), tables


def failure_of(client: Any, spec: JobSpec) -> str:
    """Submit ``spec`` and return the failure message the operator gets."""
    job_id = client.submit(spec)
    with pytest.raises(JobFailedError) as failure:
        client.wait(job_id, timeout=120)
    return str(failure.value)


def check_no_figures(message: str, caplog: pytest.LogCaptureFixture, figures: dict[str, str],
                     expect: str) -> None:
    """The bank's reason has no digit and names no figure, for the operator and the aggregator;
    the bank's own log has the figure (positive control)."""
    print(f"\noperator sees: {message}")
    assert "cannot continue at step 0: " in message, message
    reason = message.split("cannot continue at step 0: ", 1)[1]
    assert expect in reason, message
    assert not any(char.isdigit() for char in reason), message
    bank = next(b for b in figures if f"bank {b} cannot continue" in message)
    aggregator_log = "\n".join(r.getMessage() for r in caplog.records
                               if r.name == "fedtab.aggregator")
    for figure in figures.values():
        assert figure not in message and figure not in aggregator_log, (figure, message)
    own_log = [r.getMessage() for r in caplog.records
               if r.name == "fedtab.bank" and f"{bank}: job" in r.getMessage()
               and "failed here" in r.getMessage()]
    assert any(figures[bank] in line for line in own_log), own_log
    caplog.clear()


def test_refusals_for_too_many_rows_carry_no_figures_for_any_kind(
    consortium: tuple[Path, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    folder, tables = consortium
    caplog.set_level(logging.INFO)
    rows = {bank: f"{n} rows" for bank, n in ROWS.items()}

    def with_holdout(agent: Any) -> None:  # the training table doubles as holdout here
        agent.holdout = load_table(tables[agent.name], agent.bundle.contract)

    with InProcessConsortium(folder, tables, on_agent=with_holdout) as cons, \
            cons.operator_client() as client:
        for kind, expect in [("profile", "its data does not fit the job's max_rows_per_bank"),
                             ("logreg", "its data does not fit the job's max_rows_per_bank"),
                             ("gbdt", "DataContractError at bank")]:
            message = failure_of(client, JobSpec(kind=kind, params={"max_rows_per_bank": 10}))
            check_no_figures(message, caplog, rows, expect)
        # evaluate: a model the banks trained (so they agree to score it), then holdouts with
        # more rows than max_rows_per_bank, and fewer than min_rows.
        trained = client.submit(JobSpec(kind="gbdt", params={"n_estimators": 2, "max_depth": 2}))
        client.wait(trained, timeout=120)
        model = client.fetch_artifacts(trained)["model.json"].decode()
        caplog.clear()
        base = {"model_json": model, "model_name": "model.json"}
        message = failure_of(client, JobSpec(kind="evaluate",
                                             params={**base, "max_rows_per_bank": 100}))
        check_no_figures(message, caplog, rows,
                         "its data does not fit the job's max_rows_per_bank")
        message = failure_of(client, JobSpec(kind="evaluate", params={**base, "min_rows": 1000}))
        check_no_figures(message, caplog, rows, "PrivacyError at bank")


def test_values_outside_the_contract_are_not_named(
    consortium: tuple[Path, dict[str, Path]], caplog: pytest.LogCaptureFixture
) -> None:
    """A value far outside the contract (and its row) stays in the bank's log."""
    folder, tables = consortium
    caplog.set_level(logging.INFO)

    def corrupt(agent: Any) -> None:  # as if the table had changed after validation
        if agent.name == "bank_b":
            X = agent.table.X.copy()
            X[5, agent.table.contract.feature_names.index("amount")] = OUTLIER
            agent.table = LocalTable(agent.table.contract, X, agent.table.y)

    figures = {"bank_b": str(int(OUTLIER))}
    with InProcessConsortium(folder, tables, on_agent=corrupt) as cons, \
            cons.operator_client() as client:
        for kind in ("profile", "logreg"):
            message = failure_of(client, JobSpec(kind=kind))
            check_no_figures(message, caplog, figures, "DataContractError at bank bank_b")


def test_a_data_limit_is_shared_by_parameter_name_only() -> None:
    """The shared text is rebuilt from the parameter's name, never from the message; a name
    that is not a plain parameter name (digits, spaces) is not echoed either."""
    from bank_node.agent import _shareable_reason
    from fedtab.errors import ConfigError, DataLimitError

    shared = _shareable_reason(DataLimitError("this bank has 4242 rows", "max_rows_per_bank"),
                               "bank_a")
    assert shared == ("DataLimitError at bank bank_a: its data does not fit the job's "
                      "max_rows_per_bank (details in that bank's log)")
    sneaky = _shareable_reason(DataLimitError("4242 rows", "rows_4242"), "bank_a")
    assert "4242" not in sneaky and "job's parameters" in sneaky
    # A parameter problem is about the job, not the data: shared as it is.
    problem = ConfigError("gbdt parameter max_depth must be an integer in [1, 16], got -4")
    assert _shareable_reason(problem, "bank_a") == problem.one_line()
