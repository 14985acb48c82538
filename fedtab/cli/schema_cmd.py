"""`fedtab schema`: infer a data contract from a bank's table, or check a table against one.

Every option can also be set from the environment (``FEDTAB_SCHEMA_INFER_LABEL``,
``FEDTAB_SCHEMA_CHECK_SCHEMA``, ...). Errors print one line and exit non-zero (exit code 5 for
a table that breaks the contract); ``infer --out`` writes atomically, so a failed run leaves no
file behind and never a partial one.
"""

from __future__ import annotations

from pathlib import Path

import click

from fedtab.cli.edge import reports_errors
from fedtab.cli.table_options import database_options
from fedtab.data.contract import DataContract
from fedtab.data.infer import DEFAULT_MAX_CATEGORIES, infer_contract
from fedtab.data.sources import load_source, read_source, table_source, with_row_key
from fedtab.data.validate import RANGE_TOLERANCE
from fedtab.errors import DataContractError

# A file path or a database URL (with --query/--table); optional with --data-url-file.
_TABLE = click.STRING


@click.group()
def schema() -> None:
    """Infer a data contract from a table, or check a table against one."""


@schema.command("infer")
@click.argument("data", type=_TABLE, required=False)
@database_options
@click.option("--label", required=True, show_envvar=True, help="The 0/1 label column.")
@click.option(
    "--id",
    "id_column",
    default=None,
    envvar="FEDTAB_SCHEMA_INFER_ID",
    show_envvar=True,
    help="A unique row-id column (not a feature).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_envvar=True,
    help="Write the contract here (JSON) instead of printing it.",
)
@click.option(
    "--max-categories",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CATEGORIES,
    show_default=True,
    show_envvar=True,
    help="Most distinct values a text column may have to become categorical.",
)
@reports_errors
def infer(
    data: str | None, label: str, id_column: str | None, out: Path | None, max_categories: int,
    query: str | None = None, db_table: str | None = None, data_url_file: Path | None = None,
) -> None:
    """Infer the data contract of DATA (.csv, .parquet or .pq; or a database URL with --query
    or --table).

    Numeric ranges are rounded outward to two significant digits so the shared contract does
    not reveal exact extremes.
    """
    source = table_source(data, query=query, table=db_table, url_file=data_url_file)
    frame = read_source(source)
    try:
        contract = infer_contract(frame, label, id_column, max_categories=max_categories)
    except DataContractError as exc:
        raise DataContractError(f"{source}: {with_row_key(str(exc), frame, id_column)}") from exc
    if out is None:
        click.echo(contract.to_json(), nl=False)
        return
    contract.save(out)
    kinds = [f.kind for f in contract.features]
    click.echo(
        f"wrote {out}: {len(kinds)} features ({kinds.count('numeric')} numeric, "
        f"{kinds.count('categorical')} categorical), label {contract.label!r}"
    )


@schema.command("check")
@click.argument("data", type=_TABLE, required=False)
@database_options
@click.option(
    "--schema",
    "schema_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FEDTAB_SCHEMA_CHECK_SCHEMA",
    show_envvar=True,
    help="The data contract (JSON) to check against.",
)
@click.option(
    "--allow-extra",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Ignore columns the contract does not name instead of failing.",
)
@click.option(
    "--range-tolerance",
    type=click.FloatRange(min=0.0),
    default=RANGE_TOLERANCE,
    show_default=True,
    show_envvar=True,
    help="How many range widths beyond a numeric range a value may lie.",
)
@reports_errors
def check(
    data: str | None, schema_path: Path, allow_extra: bool, range_tolerance: float,
    query: str | None = None, db_table: str | None = None, data_url_file: Path | None = None,
) -> None:
    """Check that DATA (a file, or a database URL with --query/--table) follows the contract;
    print a one-line summary."""
    source = table_source(data, query=query, table=db_table, url_file=data_url_file)
    contract = DataContract.load(schema_path)
    table = load_source(source, contract, allow_extra=allow_extra,
                        range_tolerance=range_tolerance)
    click.echo(
        f"ok: {table.n_rows} rows, {len(contract.features)} features, "
        f"{int(table.y.sum())} positives"
    )
