"""The options every command that reads a bank's table shares: a database query or table.

``--data`` (each command declares its own, as an option or an argument) takes a file path or a
SQLAlchemy URL; with a URL, ``--query SQL`` or ``--table NAME`` says what to read.
``--data-url-file FILE`` reads the URL from a file instead, so a password in it stays off the
command line; libpq's environment (``PGPASSWORD``, ``PGPASSFILE``, ``~/.pgpass``) works too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

DATA_HELP = ("The table: a .csv/.parquet/.pq file, or a database URL "
             "(sqlite:///bank.db, postgresql://user@host/db) with --query or --table.")


def database_options(func: F) -> F:
    """Add ``--query``, ``--table`` and ``--data-url-file`` to a click command."""
    options = [
        click.option("--query", default=None, metavar="SQL",
                     help="With a database URL: the SELECT whose rows are the table "
                     "(add ORDER BY for stable row numbers in errors)."),
        click.option("--table", "db_table", default=None, metavar="NAME",
                     help="With a database URL: read this whole table (or SCHEMA.NAME)."),
        click.option("--data-url-file", default=None, metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="A file holding the database URL (keeps a password off the "
                     "command line)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
