"""Reading a bank's table from disk: CSV or Parquet, with one-line errors for broken files.

Only the file format is checked here (missing, empty, truncated, wrong delimiter, wrong text
encoding, repeated column names); whether the rows obey the data contract is
:mod:`fedtab.data.validate`'s job. CSV files must be comma-separated UTF-8 with one header line.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fedtab.errors import DataContractError

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
# Separators people use instead of commas; a header that holds one of them but no comma was
# written with the wrong delimiter.
OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'"}
_HEADER_PROBE_BYTES = 1 << 20
_FIELDS_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``/``.pq``) table into a DataFrame.

    Column types are pandas' own inference; the data contract decides later what they mean.

    Raises:
        DataContractError: one line naming the file and the problem: unsupported extension,
            missing file, empty file, unreadable or truncated Parquet, a CSV that is not
            comma-separated or not UTF-8, a malformed CSV row, or repeated column names.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | PARQUET_SUFFIXES:
        raise DataContractError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            "expected .csv, .parquet or .pq"
        )
    if not path.exists():
        raise DataContractError(f"{path}: file not found")
    if path.is_dir():
        raise DataContractError(f"{path}: is a directory, expected a table file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataContractError(f"{path}: cannot read: {exc.strerror}") from exc
    if size == 0:
        raise DataContractError(f"{path}: file is empty (0 bytes)")
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    return _read_csv(path)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        # The footer first: repeated column names make read_table itself fail obscurely.
        _reject_duplicates(path, list(pq.read_schema(path).names))
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise DataContractError(
            f"{path}: cannot read Parquet file (truncated or corrupt?): {detail}"
        ) from exc
    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError) as exc:
        raise DataContractError(f"{path}: cannot convert Parquet columns: {exc}") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    names = _csv_header(path)
    try:
        frame = pd.read_csv(path, encoding="utf-8", low_memory=False)
    except UnicodeDecodeError as exc:
        raise _encoding_error(path) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataContractError(f"{path}: file has no header line (blank file)") from exc
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
        found = _FIELDS_ERROR.search(detail)
        if found:
            want, line, saw = (int(g) for g in found.groups())
            detail = f"line {line} (data row {line - 1}) has {saw} fields, the header has {want}"
        raise DataContractError(f"{path}: malformed CSV: {detail}") from exc
    except OSError as exc:
        raise DataContractError(f"{path}: cannot read: {exc.strerror}") from exc
    if list(frame.columns) != names and len(frame.columns) == len(names):
        # pandas renames repeated or blank names; the raw header already passed our checks, so
        # restore the names as the file spells them.
        frame.columns = pd.Index(names[: len(frame.columns)])
    return frame


def _csv_header(path: Path) -> list[str]:
    """The header's column names as written in the file (before pandas renames repeats)."""
    with path.open("rb") as handle:
        head = handle.read(_HEADER_PROBE_BYTES)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataContractError(
            f"{path}: text encoding is UTF-16 (byte-order mark found); save the file as UTF-8"
        )
    stripped = head.lstrip(b"\r\n\t ")
    if not stripped:
        raise DataContractError(f"{path}: file has no header line (blank file)")
    line = head.split(b"\n", 1)[0]
    if b"\x00" in line:
        raise DataContractError(
            f"{path}: line 1 holds NUL bytes (UTF-16/32 text or a binary file?); "
            "save the table as UTF-8 CSV"
        )
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _encoding_error(path) from exc
    try:
        names = next(csv.reader(io.StringIO(text)))
    except (csv.Error, StopIteration) as exc:
        raise DataContractError(f"{path}: line 1 is not a CSV header: {exc}") from exc
    if not "".join(names).strip():
        raise DataContractError(f"{path}: line 1 (the header) is blank")
    if len(names) == 1:
        for sep, label in OTHER_DELIMITERS.items():
            if sep in names[0]:
                raise DataContractError(
                    f"{path}: header parses as one column but contains {label} separators; "
                    "fedtab reads comma-separated CSV"
                )
    _reject_duplicates(path, names)
    return names


def _reject_duplicates(path: Path, names: list[str]) -> None:
    counts = Counter(names)
    repeated = [name for name in names if counts[name] > 1]
    if repeated:
        name = repeated[0]
        where = [str(i + 1) for i, n in enumerate(names) if n == name]
        listed = ", ".join(where[:-1]) + " and " + where[-1]
        raise DataContractError(f"{path}: duplicate column name {name!r} (columns {listed})")


def _encoding_error(path: Path) -> DataContractError:
    """Locate the first byte that is not UTF-8 (error path only, so reading it all is fine)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        return DataContractError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{byte}; latin-1 or another "
            "encoding?); save the file as UTF-8"
        )
    return DataContractError(f"{path}: text is not valid UTF-8; save the file as UTF-8")
