"""Tables from a real PostgreSQL server that the test session starts itself.

The server is Debian's (``scripts/install_postgresql.sh``), a throwaway cluster in a temporary
folder on a loopback port chosen at run time (:mod:`postgres_server`). The synthetic consortium
is loaded into one table ``card_tx``, read by a role ``risk`` that may only SELECT. Checked:
`schema infer` and `evaluate` give what they give on the CSV files; `bank join` validates a
query's rows; a bad value in a row gives the CSV's one-line error; a real job trains with every
bank reading its rows from PostgreSQL; wrong password, missing database, table or column and an
unreachable server are one line each; and the password (from the URL, a URL file, PGPASSWORD or
a PGPASSFILE) never appears in any output or log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from harness import (
    ServiceProcess,
    new_consortium,
    run_fedtab,
    start_aggregator,
    stop_all,
    write_job,
)
from postgres_server import PostgresServer, postgres_bindir
from test_schema_cmd import CASES, assert_one_line_error, contract
from test_sql_tables import BANK_NAMES, after_source, run

from fedtab.data.tables import read_table
from fedtab.errors import DataContractError

BINDIR = postgres_bindir()
pytestmark = pytest.mark.skipif(
    BINDIR is None,
    reason="PostgreSQL server binaries (initdb, pg_ctl) not found; "
    "run scripts/install_postgresql.sh (as root: apt-get install postgresql)",
)
RISK_PASSWORD = "risk-" + os.urandom(8).hex()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL cluster, stopped and deleted after the session."""
    assert BINDIR is not None
    server = PostgresServer(BINDIR)
    try:
        yield server.start()
    finally:
        server.stop()


def _engine(url: str):  # the tests' own admin connection (fedtab reads through its own code)
    import sqlalchemy as sa

    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                            isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def bank_db(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Database ``bank`` with the synthetic consortium in ``card_tx`` (columns ``bank`` and
    ``part`` added), readable by role ``risk``; the same rows as CSV files."""
    import sqlalchemy as sa

    from fedtab.synthetic import generate_consortium, write_consortium

    root = tmp_path_factory.mktemp("pg-consortium")
    write_consortium(generate_consortium(3, 6000, seed=21), root / "data")
    admin = _engine(postgres.url)
    with admin.connect() as connection:
        connection.execute(sa.text("CREATE DATABASE bank"))
        connection.execute(sa.text(f"CREATE ROLE risk LOGIN PASSWORD '{RISK_PASSWORD}'"))
    admin.dispose()
    rows = pd.concat([
        read_table(root / "data" / bank / f"{part}.csv").assign(bank=bank, part=part)
        for bank in BANK_NAMES for part in ("train", "holdout")
    ], ignore_index=True)
    owner = _engine(postgres.url.rsplit("/", 1)[0] + "/bank")
    rows.to_sql("card_tx", owner, index=False)
    with owner.connect() as connection:
        connection.execute(sa.text("GRANT SELECT ON card_tx TO risk"))
    owner.dispose()
    host = f"127.0.0.1:{postgres.port}"
    return {
        "root": root, "contract": root / "data" / "contract.json",
        "url": f"postgresql://risk:{RISK_PASSWORD}@{host}/bank",
        "bare_url": f"postgresql://risk@{host}/bank",
        "masked": f"postgresql://risk:***@{host}/bank",
        "columns": ", ".join(c for c in rows.columns if c not in ("bank", "part")),
    }


def query(db: dict, bank: str, part: str = "train") -> str:
    return (f"SELECT {db['columns']} FROM card_tx WHERE bank = '{bank}' AND part = '{part}' "
            "ORDER BY txn_id")


def no_password(result: Result) -> None:
    assert RISK_PASSWORD not in result.output


def test_schema_infer_from_postgres_equals_infer_from_csv(bank_db: dict) -> None:
    csv = bank_db["root"] / "data" / "metro_bank" / "train.csv"
    from_csv = run(["schema", "infer", csv, "--label", "is_fraud", "--id", "txn_id"])
    # The password from libpq's environment, not from the URL.
    from_db = run(["schema", "infer", bank_db["bare_url"], "--query", query(bank_db, "metro_bank"),
                   "--label", "is_fraud", "--id", "txn_id"], env={"PGPASSWORD": RISK_PASSWORD})
    assert from_csv.exit_code == from_db.exit_code == 0, from_db.output
    assert json.loads(from_db.stdout) == json.loads(from_csv.stdout)
    no_password(from_db)


def test_schema_check_and_evaluate_from_postgres(bank_db: dict, tmp_path: Path) -> None:
    from test_evaluate import train_logreg

    from fedtab.data.contract import DataContract
    from fedtab.data.validate import load_table

    url_file = tmp_path / "bank.url"
    url_file.write_text(bank_db["url"] + "\n")
    checked = run(["schema", "check", "--data-url-file", url_file, "--query",
                   query(bank_db, "young_bank"), "--schema", bank_db["contract"]])
    assert checked.exit_code == 0 and checked.stdout.startswith("ok: "), checked.output
    no_password(checked)

    data = bank_db["root"] / "data"
    model = tmp_path / "logreg.json"
    train_logreg(load_table(data / "metro_bank" / "train.csv",
                            DataContract.load(bank_db["contract"])), model)
    from_csv = run(["evaluate", "--model", model, "--data", data / "rural_bank" / "holdout.csv",
                    "--json"])
    from_db = run(["evaluate", "--model", model, "--data-url-file", url_file,
                   "--query", query(bank_db, "rural_bank", "holdout"), "--json"])
    assert from_csv.exit_code == from_db.exit_code == 0, from_db.output
    csv_doc, db_doc = json.loads(from_csv.stdout), json.loads(from_db.stdout)
    assert db_doc.pop("data").startswith(bank_db["masked"] + " query 'SELECT txn_id")
    csv_doc.pop("data")
    assert db_doc == csv_doc
    no_password(from_db)


@pytest.mark.parametrize("name", ["text_in_numeric_column", "label_not_binary",
                                  "unknown_category", "duplicate_id"])
def test_bad_row_gives_the_csv_error(postgres: PostgresServer, bank_db: dict, tmp_path: Path,
                                     name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    csv = case.make(tmp_path)
    table = f"bad_{name}"
    owner = _engine(postgres.url.rsplit("/", 1)[0] + "/bank")
    read_table(csv).to_sql(table, owner, index=False)  # text in a number: a TEXT column
    owner.dispose()
    schema = tmp_path / "contract.json"
    contract().save(schema)
    from_csv = run(["schema", "check", csv, "--schema", schema])
    from_db = run(["schema", "check", postgres.url.rsplit("/", 1)[0] + "/bank",
                   "--query", f"SELECT * FROM {table}", "--schema", schema])
    csv_line = assert_one_line_error(from_csv, case.expect)
    db_line = assert_one_line_error(from_db, case.expect)
    source = postgres.url.rsplit("/", 1)[0].replace(postgres.password, "***") + "/bank"
    assert after_source(db_line, f"{source} query 'SELECT * FROM {table}'") == \
        after_source(csv_line, str(csv))
    assert postgres.password not in from_db.output


@pytest.mark.parametrize(
    ("change", "args", "expect"),
    [
        ({"password": "wrong-pw"}, ["--table", "card_tx"],
         'password authentication failed for user "risk"'),
        ({"database": "nobank"}, ["--table", "card_tx"], 'database "nobank" does not exist'),
        ({"port": "1"}, ["--table", "card_tx"], "Connection refused"),
        ({}, ["--table", "no_such_table"], 'relation "no_such_table" does not exist'),
        ({}, ["--query", "SELECT amount, nope FROM card_tx"], 'column "nope" does not exist'),
        ({}, ["--query", "SELECT * FROM pg_authid"], "permission denied"),
    ],
)
def test_database_failures_are_one_line_without_the_password(
        bank_db: dict, postgres: PostgresServer, change: dict, args: list[str],
        expect: str) -> None:
    password = change.get("password", RISK_PASSWORD)
    port = change.get("port", str(postgres.port))
    url = f"postgresql://risk:{password}@127.0.0.1:{port}/{change.get('database', 'bank')}"
    assert password in url  # positive control: the password is in what the command is given
    result = run(["schema", "check", url, *args, "--schema", bank_db["contract"]])
    line = assert_one_line_error(result, (expect, "risk:***@127.0.0.1:"))
    assert result.exit_code == DataContractError.exit_code
    assert password not in result.output and RISK_PASSWORD not in line


@pytest.fixture(scope="module")
def consortium(bank_db: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fedtab.data.contract import DataContract

    return new_consortium(tmp_path_factory.mktemp("pg-cons") / "consortium",
                          DataContract.load(bank_db["contract"]), BANK_NAMES)


def test_bank_join_process_never_shows_the_password(bank_db: dict, consortium: Path,
                                                    tmp_path: Path) -> None:
    """`bank join -v` (debug logging) and `simulate` refusing a URL: neither prints it."""
    wrong = bank_db["url"].replace(RISK_PASSWORD, RISK_PASSWORD + "-wrong")
    for name, url in (("good", bank_db["url"]), ("wrong", wrong)):
        process = ServiceProcess(name, [
            "bank", "join", str(consortium / "banks" / "metro_bank"), "-v", "--data", url,
            "--table", "no_such_table", "--aggregator", "127.0.0.1:1"], tmp_path)
        assert process.process.wait(timeout=60) == DataContractError.exit_code
        lines = process.output().splitlines()
        assert len(lines) == 1 and bank_db["masked"] in lines[0], lines
        assert RISK_PASSWORD not in process.output()
    result = run(["simulate", "--bank-file", bank_db["url"], "--label", "is_fraud"])
    assert result.exit_code == 2 and bank_db["masked"] in result.output
    assert RISK_PASSWORD not in result.output


@pytest.mark.slow
def test_job_with_every_bank_reading_postgres(bank_db: dict, consortium: Path,
                                              tmp_path: Path) -> None:
    """Three `bank join` processes read their rows from PostgreSQL (password from a PGPASSFILE),
    a logreg job trains, and the model is the one the same job trains from the CSV files."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:*:bank:risk:{RISK_PASSWORD}\n")
    passfile.chmod(0o600)
    models = {}
    for source in ("postgres", "csv"):
        logs = tmp_path / source / "logs"
        aggregator, address = start_aggregator(consortium, logs, tmp_path / source / "state")
        banks = []
        for bank in BANK_NAMES:
            data = (["--data", bank_db["bare_url"], "--query", query(bank_db, bank)]
                    if source == "postgres" else
                    ["--data", str(bank_db["root"] / "data" / bank / "train.csv")])
            banks.append(ServiceProcess(
                bank, ["bank", "join", str(consortium / "banks" / bank), *data,
                       "--aggregator", address], logs, env={"PGPASSFILE": str(passfile)}))
        try:
            job = write_job(tmp_path / "logreg.toml", kind="logreg")
            done = run_fedtab(["run", str(consortium / "operator"), str(job), "--out",
                               str(tmp_path / source / "out"), "--aggregator", address,
                               "--timeout", "300"])
            assert done.returncode == 0, done.stderr + "".join(b.output() for b in banks)
        finally:
            stop_all([*banks, aggregator])
        for bank in banks:
            assert "matches the contract" in bank.output()
            assert RISK_PASSWORD not in bank.output()
            if source == "postgres":
                assert f"{bank_db['bare_url']} query 'SELECT txn_id" in bank.output()
        models[source] = json.loads((tmp_path / source / "out" / "model.json").read_text())
    assert models["postgres"] == models["csv"]
