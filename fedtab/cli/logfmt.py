"""Log output of the long-running commands: plain text, or one JSON object per line.

``--log-format json`` (``aggregator serve``, ``bank join``) writes every log record to stderr
as one JSON object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the
process-wide fields the command sets (``consortium``, ``bank``), the record's ``extra`` fields,
and ``job_id`` when the message names a job. Log shippers (Loki, Elasticsearch, Cloud Logging)
read this without parsing patterns. The human lines a command prints in text mode
(:func:`announce`) become records too, so nothing non-JSON reaches stderr.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
JOB_ID = re.compile(r"\bjob-\d{4,}-[0-9a-f]{6}\b")  # the aggregator's job ids
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        when = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **self.fields,
        }
        found = JOB_ID.search(message)
        if found:
            entry["job_id"] = found.group(0)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(log_format: str, verbose: bool = False,
                  fields: Mapping[str, Any] | None = None) -> None:
    """Configure the root logger for a long-running command (stderr, INFO or DEBUG); like
    :func:`logging.basicConfig`, it leaves a logger that already has handlers alone."""
    level = logging.DEBUG if verbose else logging.INFO
    if log_format != "json":
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(fields))
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)  # Python warnings as records too, not free text


def set_fields(**fields: Any) -> None:
    """Add process-wide fields (e.g. ``bank``) to every JSON record from now on."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.fields.update(fields)


def announce(logger: logging.Logger, log_format: str, line: str, **fields: Any) -> None:
    """A command's human status line: printed as is in text mode, a record in JSON mode."""
    if log_format == "json":
        logger.info("%s", line, extra=fields)
    else:
        click.echo(line, err=True)


__all__ = ["LOG_FORMATS", "JsonFormatter", "announce", "set_fields", "setup_logging"]
