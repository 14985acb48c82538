"""Tables from a database (SQLite files here; PostgreSQL in ``test_sql_postgres``).

`schema infer/check`, `bank join`, `evaluate` and `simulate --bank-file` read a SQLAlchemy URL
with ``--query`` or ``--table`` and must behave exactly as with a file: the same contract, the
same metrics, and, for every value-level table of ``test_schema_cmd``'s malformed corpus, the
same one-line error (only the source at the front differs), naming the column, the row in the
query result and the row's id. Nothing is written on failure (SQLite would create a missing
database file: it must not), and a password in a URL never appears in any output.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from test_bad_tables_join import ConnectionCounter, tree_digest
from test_schema_cmd import CASES, assert_one_line_error, contract, good_frame, write_csv

from fedtab.cli.main import cli
from fedtab.data.sources import mask_url, read_source, table_source
from fedtab.data.tables import read_table
from fedtab.errors import ConfigError, DataContractError

# Corpus cases whose table pandas can read: the problem is in a value or a column, not the file.
VALUE_CASES = [c for c in CASES if c.name in {
    "missing_column", "missing_label_column", "extra_column", "text_in_numeric_column",
    "label_not_binary", "label_text", "label_missing", "positive_infinity", "negative_infinity",
    "far_above_range", "far_below_range", "unknown_category", "missing_in_non_nullable",
    "duplicate_id", "missing_id",
}]


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=True)


def to_sqlite(frame: pd.DataFrame, db: Path, table: str = "card_tx") -> str:
    """Write ``frame`` as ``table`` of the SQLite file ``db``; returns its URL."""
    with sqlite3.connect(db) as connection:
        frame.to_sql(table, connection, index=False, if_exists="replace")
    connection.close()
    return f"sqlite:///{db}"


def after_source(line: str, source: str) -> str:
    """The error line without ``error: DataContractError: SOURCE: `` in front."""
    prefix = f"error: DataContractError: {source}: "
    assert line.startswith(prefix), (line, prefix)
    return line[len(prefix):]


def test_value_level_corpus_case_count() -> None:
    assert len(VALUE_CASES) == 15


@pytest.mark.parametrize("case", VALUE_CASES, ids=[c.name for c in VALUE_CASES])
def test_database_row_errors_equal_the_csv_errors(tmp_path: Path, case) -> None:
    schema = tmp_path / "contract.json"
    contract().save(schema)
    csv = case.make(tmp_path)
    url = to_sqlite(read_table(csv), tmp_path / "bank.db")
    from_csv = run(["schema", "check", csv, "--schema", schema])
    from_db = run(["schema", "check", url, "--table", "card_tx", "--schema", schema])
    csv_line = assert_one_line_error(from_csv, case.expect)
    db_line = assert_one_line_error(from_db, case.expect)
    assert from_db.exit_code == from_csv.exit_code == DataContractError.exit_code
    assert after_source(db_line, f"{url} table card_tx") == after_source(csv_line, str(csv))


def test_error_names_the_row_in_the_query_result_and_its_id(tmp_path: Path) -> None:
    schema = tmp_path / "contract.json"
    contract().save(schema)
    frame = good_frame().astype({"amount": object})
    frame.loc[16, "amount"] = "abc"  # row 17, txn_id 1016
    url = to_sqlite(frame, tmp_path / "bank.db")
    result = run(["schema", "check", url, "--schema", schema,
                  "--query", "SELECT * FROM card_tx ORDER BY txn_id DESC"])
    line = assert_one_line_error(result, ())
    # 30 rows in descending id order: txn_id 1016 is the 14th row of the result.
    assert line.endswith("column 'amount', row 14: value 'abc' is not numeric (txn_id 1016)")
    # Without an id column the key is the row number alone.
    no_id = contract().__class__(contract().features, "fraud")
    no_id.save(schema)
    result = run(["schema", "check", url, "--schema", schema, "--query",
                  "SELECT amount, channel, age, fraud FROM card_tx ORDER BY txn_id DESC"])
    line = assert_one_line_error(result, ())
    assert line.endswith("column 'amount', row 14: value 'abc' is not numeric")


def test_bank_join_validates_a_database_table_and_sends_nothing_when_bad(
        tmp_path: Path) -> None:
    from harness import new_consortium

    bank_folder = new_consortium(tmp_path / "consortium", contract()) / "banks" / "bank_a"
    bad = good_frame().astype({"fraud": object})
    bad.loc[4, "fraud"] = 2
    db = tmp_path / "db" / "bank.db"
    db.parent.mkdir()
    url = to_sqlite(bad, db)
    to_sqlite(good_frame(), db, "good_tx")
    listener = ConnectionCounter()
    try:
        before_db, before_bundle = tree_digest(db.parent), tree_digest(bank_folder)
        result = run(["bank", "join", bank_folder, "--data", url, "--table", "card_tx",
                      "--aggregator", listener.address])
        line = assert_one_line_error(result, (
            f"{url} table card_tx: column 'fraud', row 5: label 2 is not 0 or 1 (txn_id 1004)",))
        assert result.exit_code == DataContractError.exit_code
        assert listener.count == 0
        assert tree_digest(db.parent) == before_db and tree_digest(bank_folder) == before_bundle
        assert line.startswith("error: DataContractError: ")
        # A missing database file is an error too, and SQLite must not create it.
        result = run(["bank", "join", bank_folder, "--data", f"sqlite:///{db}.missing",
                      "--table", "card_tx", "--aggregator", listener.address])
        assert_one_line_error(result, ("bank.db.missing not found",))
        assert not Path(f"{db}.missing").exists() and listener.count == 0
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("args", "expect", "code"),
    [
        (["--table", "nope"], "cannot read from the database: no such table: nope", 5),
        (["--query", "SELECT amount, nope FROM card_tx"], "no such column: nope", 5),
        (["--query", "SELEC * FROM card_tx"], 'near "SELEC": syntax error', 5),
        (["--query", "SELECT *, amount FROM card_tx"], "duplicate column name 'amount'", 5),
        (["--query", "SELECT * FROM card_tx WHERE 0"], "no data rows", 5),
        (["--query", "SELECT txn_id, amount, channel, DATE('now') AS age, fraud FROM card_tx"],
         "column 'age', row 1: value ", 5),
        ([], "give exactly one of --query SQL or --table NAME", 2),
        (["--table", "card_tx", "--query", "SELECT 1"], "exactly one of --query", 2),
    ],
)
def test_bad_database_input_is_one_line(tmp_path: Path, args: list[str], expect: str,
                                        code: int) -> None:
    url = to_sqlite(good_frame(), tmp_path / "bank.db")
    schema = tmp_path / "contract.json"
    contract().save(schema)
    result = run(["schema", "check", url, "--schema", schema, *args])
    assert_one_line_error(result, (expect,))
    assert result.exit_code == code


def test_query_or_table_with_a_file_path_is_a_config_error(tmp_path: Path) -> None:
    csv = write_csv(good_frame(), tmp_path / "t.csv")
    result = run(["schema", "infer", csv, "--label", "fraud", "--table", "card_tx"])
    assert_one_line_error(result, ("--query and --table go with a database URL",))
    assert result.exit_code == ConfigError.exit_code
    result = run(["schema", "infer", "--label", "fraud"])
    assert_one_line_error(result, ("give the table as --data PATH_OR_URL or --data-url-file",))


def test_schema_infer_from_sqlite_equals_infer_from_csv(tmp_path: Path) -> None:
    frame = good_frame()
    csv = write_csv(frame, tmp_path / "t.csv")
    url = to_sqlite(frame, tmp_path / "bank.db")
    from_csv = run(["schema", "infer", csv, "--label", "fraud", "--id", "txn_id"])
    from_db = run(["schema", "infer", url, "--label", "fraud", "--id", "txn_id",
                   "--query", "SELECT * FROM card_tx ORDER BY txn_id"])
    assert from_csv.exit_code == from_db.exit_code == 0, from_db.output
    assert json.loads(from_db.stdout) == json.loads(from_csv.stdout)
    # --out writes nothing when the query fails.
    out = tmp_path / "c.json"
    failed = run(["schema", "infer", url, "--label", "fraud", "--table", "nope", "--out", out])
    assert failed.exit_code == DataContractError.exit_code and not out.exists()


def test_chunks_join_into_the_same_frame(tmp_path: Path) -> None:
    frame = good_frame()
    frame["age"] = frame["age"].astype(float)
    frame.loc[:9, "age"] = np.nan  # NULL throughout the first chunk of 7 rows
    url = to_sqlite(frame, tmp_path / "bank.db")
    source = table_source(url, query="SELECT * FROM card_tx ORDER BY txn_id")
    chunked = read_source(source, chunk_rows=7)
    whole = read_source(source, chunk_rows=1000)
    assert chunked["age"].dtype == np.float64
    pd.testing.assert_frame_equal(chunked, whole)
    pd.testing.assert_frame_equal(whole, frame, check_dtype=False)


def test_password_is_masked_and_url_file_works(tmp_path: Path) -> None:
    secret = "Sup3r-s3cret-pw"
    url = f"postgresql://risk:{secret}@127.0.0.1:1/bank"
    assert secret not in mask_url(url) and "risk:***@127.0.0.1:1" in mask_url(url)
    assert secret not in mask_url(f"weird+x://risk:{secret}@h/db?a=%zz")
    schema = tmp_path / "contract.json"
    contract().save(schema)
    url_file = tmp_path / "bank.url"
    url_file.write_text(f"# the bank's table\n{url}\n")
    for args in (["--data-url-file", url_file], [url]):
        result = run(["schema", "check", *args, "--schema", schema, "--table", "card_tx"])
        assert_one_line_error(result, ("risk:***@127.0.0.1:1/bank table card_tx",
                                       "cannot read from the database"))
        assert secret not in result.output
        assert result.exit_code == DataContractError.exit_code
    # A bank-file URL in `simulate` without #TABLE: a usage error, the password masked.
    result = run(["simulate", "--bank-file", f"a={url}", "--label", "fraud"])
    assert result.exit_code == 2 and "add #TABLE" in result.output
    assert secret not in result.output
    # The positive control: the URL file the command read does hold the password.
    assert secret in url_file.read_text()
    good = to_sqlite(good_frame(), tmp_path / "bank.db")
    url_file.write_text(good + "\n")
    result = run(["schema", "check", "--data-url-file", url_file, "--schema", schema,
                  "--table", "card_tx"])
    assert result.exit_code == 0 and result.stdout.startswith("ok: 30 rows"), result.output


BANK_NAMES = ("metro_bank", "rural_bank", "young_bank")


@pytest.fixture(scope="module")
def consortium_db(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The synthetic consortium as CSV files and as one SQLite table ``card_tx`` (with a
    ``bank`` and a ``part`` column), plus a logreg model trained on metro_bank's rows."""
    from test_evaluate import train_logreg

    from fedtab.data.contract import DataContract
    from fedtab.data.validate import load_table
    from fedtab.synthetic import generate_consortium, write_consortium

    root = tmp_path_factory.mktemp("sqlite-consortium")
    write_consortium(generate_consortium(3, 6000, seed=12), root / "data")
    contract_path = root / "data" / "contract.json"
    rows = pd.concat([
        read_table(root / "data" / bank / f"{part}.csv").assign(bank=bank, part=part)
        for bank in BANK_NAMES for part in ("train", "holdout")
    ], ignore_index=True)
    url = to_sqlite(rows, root / "banks.db")
    model = root / "logreg.json"
    train_logreg(load_table(root / "data" / "metro_bank" / "train.csv",
                            DataContract.load(contract_path)), model)
    columns = ", ".join(c for c in rows.columns if c not in ("bank", "part"))
    return {"root": root, "url": url, "model": model, "contract": contract_path,
            "columns": columns}


def bank_query(db: dict, bank: str, part: str) -> str:
    return (f"SELECT {db['columns']} FROM card_tx WHERE bank = '{bank}' AND part = '{part}' "
            "ORDER BY txn_id")


def test_evaluate_from_sqlite_equals_evaluate_from_csv(consortium_db: dict,
                                                        tmp_path: Path) -> None:
    db = consortium_db
    csv = db["root"] / "data" / "rural_bank" / "holdout.csv"
    from_csv = run(["evaluate", "--model", db["model"], "--data", csv, "--json"])
    query = bank_query(db, "rural_bank", "holdout")
    from_db = run(["evaluate", "--model", db["model"], "--data", db["url"], "--query", query,
                   "--json", "--report", tmp_path / "report"])
    assert from_csv.exit_code == from_db.exit_code == 0, from_db.output
    csv_doc, db_doc = json.loads(from_csv.stdout), json.loads(from_db.stdout)
    assert db_doc["data"].startswith(f"{db['url']} query 'SELECT txn_id, amount,")
    assert db_doc["n_rows"] > 100
    for key in ("data", "report"):
        csv_doc.pop(key, None), db_doc.pop(key, None)
    assert db_doc == csv_doc
    assert "query" in (tmp_path / "report" / "report.html").read_text()
    # A bad row in the holdout: one line naming column, row and id, as for a file.
    tenth = sorted(read_table(csv)["txn_id"])[9]
    bad = run(["evaluate", "--model", db["model"], "--data", db["url"], "--query",
               query.replace("SELECT txn_id, amount,", "SELECT txn_id, "
                             f"CASE WHEN txn_id = '{tenth}' THEN 'n/a' "
                             "ELSE amount END AS amount,")])
    assert_one_line_error(bad, (f"column 'amount', row 10: value 'n/a' is not numeric "
                                f"(txn_id '{tenth}')",))
    assert bad.exit_code == DataContractError.exit_code


def test_simulate_from_sqlite_trains_the_same_model_as_from_csv(consortium_db: dict,
                                                                 tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    db = consortium_db

    def simulate(out: Path, bank_args: list[str]) -> subprocess.CompletedProcess[str]:
        args = [a for pair in bank_args for a in ("--bank-file", pair)]
        return subprocess.run(
            [sys.executable, "-m", "fedtab.cli.main", "simulate", *args, "--label", "is_fraud",
             "--id", "txn_id", "--model", "logreg", "--key-bits", "1024", "--out", str(out)],
            env={**os.environ, "OMP_NUM_THREADS": "1", "FEDTAB_ALLOW_SMALL_KEYS": "1"},
            capture_output=True, text=True, timeout=600, check=False)

    files = [f"{b}={db['root'] / 'data' / b / 'train.csv'}" for b in BANK_NAMES]
    queries = [f"{b}={db['url']}#{bank_query(db, b, 'train')}" for b in BANK_NAMES]
    from_csv = simulate(tmp_path / "csv", files)
    from_db = simulate(tmp_path / "db", queries)
    assert from_csv.returncode == 0, from_csv.stderr[-2000:]
    assert from_db.returncode == 0, from_db.stderr[-2000:]
    assert (tmp_path / "db" / "data" / "rural_bank" / "train.parquet").is_file()
    model_csv = json.loads((tmp_path / "csv" / "model.json").read_text())
    model_db = json.loads((tmp_path / "db" / "model.json").read_text())
    assert model_db == model_csv
