"""Reaching MLflow: the optional import, the tracking URI, and MLflow errors as one line.

Everything goes through an explicit ``MlflowClient`` for the chosen URI: fedtab never sets
MLflow's process-wide tracking URI or active run, so a notebook's own MLflow state is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fedtab.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

INSTALL_HINT = "--mlflow needs MLflow: pip install 'fedtab[mlflow]'"
Say = Callable[[str], None]


def import_mlflow() -> Any:
    """The ``mlflow`` module; raises :class:`ConfigError` with the install command without it."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(INSTALL_HINT) from exc
    # The sqlite store logs its schema migrations at INFO on first use; a CLI shows only
    # warnings and errors of the libraries it calls.
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def open_client(uri: str) -> tuple[MlflowClient, str]:
    """An ``MlflowClient`` for ``uri`` (``""``: MLflow's own default, which honours
    ``MLFLOW_TRACKING_URI``) and the URI it resolved to."""
    mlflow = import_mlflow()
    with mlflow_errors(uri or "the default tracking URI"):
        resolved = uri or mlflow.get_tracking_uri()
        return mlflow.MlflowClient(tracking_uri=resolved), resolved


@contextmanager
def mlflow_errors(where: str) -> Iterator[None]:
    """Turn an ``MlflowException`` (or an unreachable server) into a one-line
    :class:`ConfigError` naming ``where``."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"MLflow at {where}: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """The first line of an MLflow error, with the way out for a refused file store."""
    text = str(exc).strip()
    if "MLFLOW_ALLOW_FILE_STORE" in text:
        return ("this MLflow refuses file stores (file:./mlruns); use a database store such "
                "as sqlite:///mlflow.db (its default), or set MLFLOW_ALLOW_FILE_STORE=true")
    first = (text.splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 300 else first[:297] + "..."
