"""Job kinds: one declaration each, one registry, one parameter validator, deny-by-default."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import make_frames, write_job, write_tables

from bank_node.policy import BankPolicy, PolicyRefusal
from fedtab.consortium_eval.trainer import EvaluateParams
from fedtab.data.validate import load_table
from fedtab.errors import ConfigError, PrivacyError
from fedtab.gbdt.params import GBDTParams
from fedtab.jobs import KINDS, JobSpec, Registry, create_trainer, job_kind
from fedtab.jobs.constraints import Interval
from fedtab.logreg.params import LogRegParams
from fedtab.moments import MOMENTS_STEP
from fedtab.profiling import ProfileParams
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext

# ----- the one validator --------------------------------------------------------------------------


def test_an_integral_float_means_the_same_to_trainer_and_policy() -> None:
    spec = JobSpec("gbdt", {"min_child_samples": 60.0})
    assert GBDTParams.from_mapping(spec.params).min_child_samples == 60
    assert spec.check_params()["min_child_samples"] == 60
    BankPolicy(privacy_floor=60).check(spec)
    with pytest.raises(PolicyRefusal, match=r"min_child_samples = 60, below .* floor of 61 rows"):
        BankPolicy(privacy_floor=61).check(spec)
    with pytest.raises(ConfigError, match=r"min_child_samples must be an integer >= 1, got 60\.5"):
        BankPolicy(privacy_floor=60).check(JobSpec("gbdt", {"min_child_samples": 60.5}))


def test_messages_name_the_parameter_the_range_and_a_suggestion() -> None:
    with pytest.raises(ConfigError) as unknown:
        GBDTParams.from_mapping({"n_estimator": 10})
    assert str(unknown.value) == (
        "unknown gbdt parameter 'n_estimator'; did you mean 'n_estimators'?")
    with pytest.raises(ConfigError, match=r"learning_rate must be a number in \(0\.0, 1\.0\], got"):
        GBDTParams.from_mapping({"learning_rate": 0})
    with pytest.raises(ConfigError, match=r"max_rows_per_bank must be an integer in \[1, 2\*\*40"):
        ProfileParams.from_mapping({"max_rows_per_bank": 0})
    with pytest.raises(ConfigError, match="did you mean 'max_rows_per_bank'"):
        ProfileParams.from_mapping({"max_rows": 10})
    with pytest.raises(ConfigError, match=r"class_weight must be omitted or 'balanced' or a table"):
        LogRegParams.from_mapping({"class_weight": "auto"})
    with pytest.raises(ConfigError, match="cannot both be 0"):
        GBDTParams(reg_lambda=0.0, min_child_weight=0.0)


def test_xgboost_aliases_keep_working_once() -> None:
    p = GBDTParams.from_mapping({"eta": 0.1, "gamma": 2, "lambda": 3, "num_boost_round": 7})
    assert (p.learning_rate, p.min_split_loss, p.reg_lambda, p.n_estimators) == (0.1, 2, 3, 7)
    with pytest.raises(ConfigError, match="learning_rate is given twice"):
        GBDTParams.from_mapping({"eta": 0.1, "learning_rate": 0.2})


def test_params_classes_default_to_their_declared_defaults() -> None:
    assert GBDTParams.from_mapping({}) == GBDTParams()
    assert LogRegParams.from_mapping({}) == LogRegParams()
    assert ProfileParams.from_mapping({}) == ProfileParams()
    model = EvaluateParams.from_mapping({"model_json": "{}"})
    assert (model.score_bins, model.min_rows, model.model_name) == (8192, 50, "model.json")


def test_interval_bounds() -> None:
    half_open = Interval(float, 0, 1, closed="right")
    assert [half_open.convert(v)[0] for v in (0, 0.5, 1, 1.5, float("nan"), True)] == [
        False, True, True, False, False, False]
    assert Interval(int, 1, None).convert(3.0) == (True, 3)


# ----- job files ----------------------------------------------------------------------------------


def test_job_tables_and_keys_are_checked_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown \[job\] parameter 'sed'; did you mean 'seed'"):
        JobSpec.from_dict({"job": {"kind": "gbdt", "sed": 3}})
    with pytest.raises(ConfigError, match=r"unknown table \[parms\].*did you mean 'params'"):
        JobSpec.from_dict({"job": {"kind": "gbdt"}, "parms": {}})
    with pytest.raises(ConfigError, match=r"unknown job kind 'gbt'.*did you mean 'gbdt'"):
        JobSpec.from_dict({"job": {"kind": "gbt"}})
    with pytest.raises(ConfigError, match="seed must be an integer"):
        JobSpec.from_dict({"job": {"kind": "gbdt", "seed": "x"}})
    spec = JobSpec.from_dict({"job": {"kind": "gbdt", "bank_timeout": 30}})
    assert spec.bank_timeout == 30.0 and JobSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("job_line", "params", "expected"), [
    ("", {"n_estimator": 10}, "unknown gbdt parameter 'n_estimator'; did you mean 'n_estimators'?"),
    ("sed = 3", {}, "unknown [job] parameter 'sed'; did you mean 'seed'?"),
    ("", {"max_depth": 40}, "gbdt parameter max_depth must be an integer in [1, 16], got 40"),
])
def test_fedtab_run_checks_the_job_file_before_connecting(
    tmp_path: Path, job_line: str, params: dict, expected: str
) -> None:
    from fedtab.cli.main import cli

    job = write_job(tmp_path / "job.toml", "gbdt", params, extra_job=job_line)
    # No operator folder exists and nothing listens: the job file is refused first.
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "no-operator"), str(job),
                                      "--aggregator", "127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(expected), result.output


# ----- the registry -------------------------------------------------------------------------------


def test_every_registered_kind_declares_what_it_releases() -> None:
    for name in KINDS:
        kind = job_kind(name)
        assert kind.name == name and kind.releases, name
        for release in kind.releases:
            assert release.to and release.what and release.granularity
            if release.floor is not None:
                assert release.floor in kind.schema.params
            if release.consortium_rows:
                assert kind.check_proposal is not None
    assert job_kind("evaluate").needs_holdout and job_kind("evaluate").scored_model
    assert MOMENTS_STEP == "moments"  # fedtab.profile_kind names it without importing moments


def test_kinds_read_their_own_step_ids() -> None:
    gbdt, logreg = job_kind("gbdt"), job_kind("logreg")
    assert gbdt.total_rounds({"n_estimators": 10.0}) == 10
    assert gbdt.total_rounds({"n_estimators": 0}) is None  # the banks report it
    assert gbdt.progress is not None and logreg.progress is not None
    assert gbdt.progress.read("tree/4/depth/2/grads", 10) == ("tree 5/10", 0.4)
    assert gbdt.progress.read("bins", 10) == ("", None)
    assert logreg.progress.read("newton/2", None) == ("round 3", None)
    assert job_kind("profile").progress is None


def test_fedtab_run_loads_only_the_kind_it_needs(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.toml", "gbdt", {"n_estimators": 3})
    probe = (
        "import sys\n"
        "from fedtab.cli.run_cmd import prepared_spec\n"
        f"prepared_spec({str(job)!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'xgboost'\n"
        "             or m in ('fedtab.gbdt.trainer', 'fedtab.logreg.kind', 'sklearn')))\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "[]"


# ----- deny by default ----------------------------------------------------------------------------


def test_a_kind_that_declares_no_releases_is_refused_by_every_bank() -> None:
    silent = replace(job_kind("profile"), name="silent", releases=())
    policy = BankPolicy(privacy_floor=1, kinds=Registry({"silent": silent}))
    with pytest.raises(PolicyRefusal, match="declares nothing it releases") as refusal:
        policy.check(JobSpec("silent"))
    assert "\n" not in str(refusal.value)
    with pytest.raises(PolicyRefusal, match="unknown job kind 'gbdt'"):
        policy.check(JobSpec("gbdt"))
    unchecked = replace(job_kind("profile"), name="unchecked", check_proposal=None)
    with pytest.raises(PolicyRefusal, match="declares no check"):
        BankPolicy(kinds=Registry({"unchecked": unchecked})).check(JobSpec("unchecked"))


@pytest.mark.parametrize("kind", ["logreg", "profile"])
def test_consortium_figures_are_not_released_below_a_banks_floor(
    tmp_path: Path, kind: str
) -> None:
    contract, paths = write_tables(tmp_path, make_frames(rows=100))
    names = tuple(sorted(paths))
    tables = {b: load_table(p, contract) for b, p in paths.items()}
    # issue 11: the job's floor on per-category and non-null counts (min_group_rows, default
    # 50) is checked before the sums; set to the bank's floor, the rest waits for the sums
    with pytest.raises(PolicyRefusal, match="min_group_rows = 50, below"):
        BankPolicy(privacy_floor=10**6).check(JobSpec(kind))
    BankPolicy(privacy_floor=10**6).check(JobSpec(kind, {"min_group_rows": 10**6}))

    def trainers(floor: int) -> dict:
        params = {"min_group_rows": floor}
        return {b: create_trainer(JobSpec(kind, params),
                                  JobContext("j", b, names, params=params, privacy_floor=floor),
                                  tables[b]) for b in names}

    with pytest.raises(PrivacyError, match="fewer rows than its privacy floor") as refusal:
        run_plaintext(trainers(10**6))
    assert not any(char.isdigit() for char in str(refusal.value).split("refuses")[1])
    assert run_plaintext(trainers(100)).artifacts  # 100 rows per bank and per feature suffice
