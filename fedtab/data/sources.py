"""Where a bank's table comes from: a file, or a database query read in chunks.

A :class:`TableSource` is a CSV/Parquet path, or a SQLAlchemy URL with a ``--query`` or a
``--table``. :func:`read_source` turns either into the same pandas DataFrame, so the data
contract's checks (:mod:`fedtab.data.validate`, :mod:`fedtab.data.infer`) run unchanged and
report the same one-line errors. Rows are counted in the query result's order (the first row
is row 1, as the first data row of a CSV); a query should ``ORDER BY`` its key so the numbers
are stable. When the table has an id column, errors about a row also name that row's id.

Threat model: a database URL may carry a password. It is used to connect and is otherwise
treated as a secret: every message that names the URL shows it masked (``***``), and the
password text is scrubbed from driver error messages before they reach the user. Credentials
can also stay out of the URL entirely: the driver's own environment (``PGPASSWORD``,
``PGPASSFILE``, ``~/.pgpass`` through libpq) or a file holding the URL (``--data-url-file``,
readable by the bank's operator only) keep the password off the command line and out of
process listings.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedtab.data.contract import DataContract, LocalTable
from fedtab.data.tables import read_table
from fedtab.data.validate import RANGE_TOLERANCE, to_local_table
from fedtab.errors import ConfigError, DataContractError

DEFAULT_CHUNK_ROWS = 50_000
# "scheme://" or "scheme+driver://": a SQLAlchemy URL rather than a file path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9.+-]*://")
# user:password@ in any URL-looking text (a fallback when SQLAlchemy cannot parse the URL).
_USERINFO = re.compile(r"(://[^:/@\s]*):[^@\s]*@")
_ROW = re.compile(r"\brow (\d+)\b")
_SHOWN_QUERY = 60
# libpq's own drivers: SQLAlchemy's plain "postgresql://" means psycopg2, which fedtab does not
# ship; psycopg 3 reads the same libpq environment (PGPASSWORD, PGPASSFILE, PGSSLMODE, ...).
_POSTGRES_NAMES = frozenset({"postgresql", "postgres"})
_CONNECT_TIMEOUT_SECONDS = 15


def is_database_url(text: str) -> bool:
    """Whether ``text`` is a database URL (``sqlite:///x.db``, ``postgresql://...``)."""
    return bool(_URL.match(text.strip()))


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (also when it does not parse)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\1:***@", url)


@dataclass(frozen=True)
class TableSource:
    """A table to read: a file ``location``, or a database URL with a query or a table name."""

    location: str
    query: str | None = None
    table: str | None = None

    @property
    def is_database(self) -> bool:
        return is_database_url(self.location)

    @property
    def path(self) -> Path:
        """The file path (for file sources)."""
        return Path(self.location)

    def describe(self) -> str:
        """How messages name this source: the path, or the masked URL and the table/query."""
        if not self.is_database:
            return self.location
        if self.table is not None:
            return f"{mask_url(self.location)} table {self.table}"
        query = " ".join(str(self.query).split())
        if len(query) > _SHOWN_QUERY:
            query = query[: _SHOWN_QUERY - 3] + "..."
        return f"{mask_url(self.location)} query {query!r}"

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"TableSource({self.describe()!r})"


def table_source(
    data: str | Path | None,
    *,
    query: str | None = None,
    table: str | None = None,
    url_file: Path | None = None,
) -> TableSource:
    """Build a source from command-line values: ``--data``, ``--query``, ``--table`` and
    ``--data-url-file`` (a file whose first line that is not blank or a ``#`` comment is the
    database URL).

    Raises:
        ConfigError: neither or both of ``data`` and ``url_file``; a URL without exactly one of
            ``query``/``table``; ``query``/``table`` with a file path; an unreadable URL file.
    """
    if data is not None and url_file is not None:
        raise ConfigError("give --data or --data-url-file, not both")
    if data is None and url_file is None:
        raise ConfigError("give the table as --data PATH_OR_URL or --data-url-file FILE")
    location = str(data) if data is not None else _read_url_file(Path(str(url_file)))
    if not is_database_url(location):
        if url_file is not None:
            raise ConfigError(f"{url_file}: does not hold a database URL (scheme://...)")
        if query is not None or table is not None:
            raise ConfigError("--query and --table go with a database URL, not a file path")
        return TableSource(str(Path(location)))
    if (query is None) == (table is None):
        raise ConfigError(
            f"{mask_url(location)}: give exactly one of --query SQL or --table NAME"
        )
    if query is not None and not query.strip():
        raise ConfigError("--query is empty")
    return TableSource(location, query=query, table=table)


def _read_url_file(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the database URL file {path}: {exc}") from exc
    url = next((line for line in lines if line and not line.startswith("#")), "")
    if not url:
        raise ConfigError(f"{path}: no database URL in it")
    return url


def read_source(source: TableSource, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pd.DataFrame:
    """The source's table as a DataFrame; a database result is fetched ``chunk_rows`` at a time
    through a server-side cursor, so the driver never buffers the whole result next to it.

    Raises:
        DataContractError: one line naming the source (URL masked): the file's problem, or an
            unreachable database, refused credentials, a missing table, a bad query, a missing
            driver.
    """
    if not source.is_database:
        return read_table(source.path)
    chunks = list(_query_chunks(source, chunk_rows))
    # A column that is NULL throughout one chunk comes back as object; infer_objects gives the
    # whole column the type its values share (float for numbers with gaps).
    frame = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    return _dates_as_datetime(frame.infer_objects())


def _dates_as_datetime(frame: pd.DataFrame) -> pd.DataFrame:
    """DATE columns arrive as Python ``date`` objects: make them datetime64, so validation
    says a date is not a number (as it does for a Parquet date column)."""
    for index, dtype in enumerate(frame.dtypes):
        if dtype != np.dtype(object):
            continue
        present = frame.iloc[:, index].dropna()
        if len(present) and isinstance(present.iloc[0], datetime.date):
            frame.isetitem(index, pd.to_datetime(frame.iloc[:, index], errors="coerce"))
    return frame


def load_source(
    source: TableSource,
    contract: DataContract,
    *,
    allow_extra: bool = False,
    range_tolerance: float = RANGE_TOLERANCE,
) -> LocalTable:
    """Read ``source``, validate it against ``contract`` and encode it (as ``load_table``).

    Raises:
        DataContractError: one line, prefixed with the source (URL masked), for the first
            violation; a row's id is named when the contract has an id column.
    """
    frame = read_source(source)
    try:
        return to_local_table(
            frame, contract, allow_extra=allow_extra, range_tolerance=range_tolerance
        )
    except DataContractError as exc:
        message = with_row_key(str(exc), frame, contract.id_column)
        raise DataContractError(f"{source.describe()}: {message}") from exc


def with_row_key(message: str, frame: pd.DataFrame, key_column: str | None) -> str:
    """Append the row's key (``(txn_id 42)``) to a message naming ``row N`` of ``frame``.

    Left as it is when there is no key column, the message is about the key column itself, or
    that row has no key.
    """
    found = _ROW.search(message)
    if key_column is None or found is None or key_column not in frame.columns:
        return message
    if f"column {key_column!r}" in message:
        return message
    row = int(found.group(1)) - 1
    if not 0 <= row < len(frame):
        return message
    value = frame[key_column].iloc[row]
    if isinstance(value, pd.Series) or pd.isna(value):
        return message
    shown = repr(value) if isinstance(value, str) else str(value)
    return f"{message} ({key_column} {shown})"


def _query_chunks(source: TableSource, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Run the source's query and yield its rows as DataFrames of at most ``chunk_rows``."""
    import sqlalchemy as sa

    engine = _engine(source)
    try:
        statement: Any = (
            sa.text(str(source.query))
            if source.query is not None
            else sa.select(sa.literal_column("*")).select_from(_table_clause(str(source.table)))
        )
        with engine.connect() as connection:
            streaming = connection.execution_options(
                stream_results=True, max_row_buffer=chunk_rows
            )
            yield from pd.read_sql_query(statement, streaming, chunksize=chunk_rows)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # pandas wraps a failed statement in its own DatabaseError; the driver's is the cause.
        raise _database_error(source, exc.__cause__ or exc) from None
    finally:
        engine.dispose()


def _table_clause(name: str) -> Any:
    """``schema.table`` or ``table`` as a quoted table reference (never pasted into SQL)."""
    import sqlalchemy as sa

    schema, _, table = name.rpartition(".")
    return sa.table(table, schema=schema or None)


def _engine(source: TableSource) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        url = make_url(source.location)
    except (sa.exc.ArgumentError, ValueError):
        raise DataContractError(
            f"{mask_url(source.location)}: not a database URL this version understands"
        ) from None
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() in _POSTGRES_NAMES:
        if url.drivername in _POSTGRES_NAMES:
            url = url.set(drivername="postgresql+psycopg")
        if "connect_timeout" not in url.query and "PGCONNECT_TIMEOUT" not in os.environ:
            connect_args["connect_timeout"] = _CONNECT_TIMEOUT_SECONDS
    if url.get_backend_name() == "sqlite":
        _check_sqlite_file(source, url.database)
    try:
        return sa.create_engine(url, connect_args=connect_args)
    except ImportError as exc:
        raise DataContractError(
            f"{source.describe()}: the database driver is not installed ({exc.name or exc}); "
            "for PostgreSQL: pip install 'fedtab[postgresql]'"
        ) from None
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise _database_error(source, exc) from None


def _check_sqlite_file(source: TableSource, database: str | None) -> None:
    """SQLite would create a missing file (writing where nothing may be written): refuse."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if not Path(database).is_file():
        raise DataContractError(f"{source.describe()}: database file {database} not found")


def _database_error(source: TableSource, exc: BaseException) -> DataContractError:
    """One line from a driver error, with the password scrubbed out of it."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    detail = lines[0] if lines else type(original).__name__
    if len(lines) > 1 and lines[0].rstrip().endswith("failed:"):
        detail = f"{lines[0]} {lines[1]}"  # libpq may put the reason on the next line
    detail = _scrub(detail, source.location)[:300]
    return DataContractError(f"{source.describe()}: cannot read from the database: {detail}")


def _scrub(text: str, url: str) -> str:
    """Remove the URL's password (and the raw URL) from ``text``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = text.replace(url, mask_url(url))
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    if password:
        text = text.replace(str(password), "***")
    return _USERINFO.sub(r"\1:***@", text)
