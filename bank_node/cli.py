"""``fedtab bank join``: validate the bank's table, attach to the aggregator and serve jobs.

Threat model: the bank process holds the private key and shard key (from its bundle) and its
table; nothing is sent before the table passes the data contract. A consortium key under 2048
bits is refused (tests opt in with ``FEDTAB_ALLOW_SMALL_KEYS=1``); jobs over two banks only
with ``--allow-two-banks``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from bank_node.policy import DEFAULT_PRIVACY_FLOOR
from fedtab.cli.edge import reports_errors
from fedtab.cli.logfmt import LOG_FORMATS, announce, set_fields, setup_logging
from fedtab.cli.table_options import DATA_HELP, database_options

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}
log = logging.getLogger("fedtab.bank")


def limit_threads() -> None:
    """One compute thread per bank process (several share the machine's cores)."""
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


@click.group()
def bank() -> None:
    """Take part in a consortium as a bank."""


@bank.command()
@click.argument("bundle_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "data_path", default=None, metavar="PATH|URL", help=DATA_HELP)
@database_options
@click.option("--holdout", "holdout_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The bank's holdout table for evaluate jobs (validated like --data).")
@click.option("--aggregator", "address", default=None, metavar="HOST:PORT",
              help="Aggregator address (default: the consortium's).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Crypto worker processes.")
@click.option("--give-up-after", type=click.FloatRange(min=0), default=600.0,
              show_default=True, metavar="SECONDS",
              help="Exit (code 8) when the aggregator stays unreachable this long; 0: never.")
@click.option("--privacy-floor", type=click.IntRange(min=1), default=DEFAULT_PRIVACY_FLOOR,
              show_default=True, metavar="ROWS",
              help="Refuse jobs whose released statistics may cover fewer rows "
              "(gbdt min_child_samples, evaluate min_rows).")
@click.option("--approve-model", "approved_models", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A model file this bank agrees to evaluate although it did not help train "
              "it (repeatable).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="Log lines as text, or one JSON object per line.")
@click.option("--allow-two-banks", is_flag=True,
              help="Take part in jobs over only two banks when the job allows it (each bank "
              "can then deduce the other's contribution).")
@click.option("--insecure-small-key-for-tests", "allow_small", is_flag=True, hidden=True,
              envvar="FEDTAB_ALLOW_SMALL_KEYS")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@reports_errors
def join(bundle_dir: Path, data_path: str | None, address: str | None, workers: int,
         verbose: bool, query: str | None = None, db_table: str | None = None,
         data_url_file: Path | None = None, holdout_path: Path | None = None,
         give_up_after: float = 600.0, privacy_floor: int = DEFAULT_PRIVACY_FLOOR,
         approved_models: tuple[Path, ...] = (), log_format: str = "text",
         allow_two_banks: bool = False, allow_small: bool = False) -> None:
    """Join with the bank folder BUNDLE_DIR (e.g. DIR/banks/NAME) and serve jobs."""
    limit_threads()
    setup_logging(log_format, verbose)
    from bank_node.agent import BankAgent
    from bank_node.policy import BankPolicy
    from fedtab.consortium import load_bank_bundle
    from fedtab.crypto.keys import require_full_size
    from fedtab.data.sources import load_source, table_source
    from fedtab.data.validate import load_table

    source = table_source(data_path, query=query, table=db_table, url_file=data_url_file)
    bundle = load_bank_bundle(bundle_dir)
    require_full_size(bundle.public_key, allow_small_for_tests=allow_small)
    set_fields(bank=bundle.name)

    def say(line: str) -> None:
        announce(log, log_format, line)

    table = load_source(source, bundle.contract)
    say(f"{bundle.name}: {source} matches the contract ({table.n_rows} rows)")
    holdout = None
    if holdout_path is not None:
        holdout = load_table(holdout_path, bundle.contract)
        say(f"{bundle.name}: holdout {holdout_path} matches the contract "
            f"({holdout.n_rows} rows)")
    policy = BankPolicy.for_bundle(bundle_dir, privacy_floor, approved_models,
                                   allow_two_banks=allow_two_banks)
    agent = BankAgent(bundle, table, address, workers=workers,
                      progress=say, holdout=holdout,
                      give_up_after=give_up_after or None, policy=policy)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
    try:
        agent.run_forever()
    finally:
        agent.close()
    say(f"{bundle.name}: detached")
