"""Reading the source files: a dataset folder (the 7 files as handed over) and the operations workbooks.

Headers are matched ignoring case and surrounding whitespace, trailing blank rows of a workbook are ignored,
and a required column that is missing is an error naming the file, the sheet and the column. Values are
typed by :mod:`apparel.schemas`; a value that cannot be typed is an error naming its row, except an
unparseable timestamp, which the store can only hold as NULL and which is counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from apparel.errors import SourceError
from apparel.schemas import SourceTable


@dataclass
class ReadResult:
    table: SourceTable
    frame: pd.DataFrame
    origin: str                       # e.g. "cities.xlsx#Worksheet"
    warnings: list[str] = field(default_factory=list)


def normalize_header(name: object) -> str:
    return str(name).strip().lower()


def _select_columns(raw: pd.DataFrame, table: SourceTable, origin: str) -> tuple[pd.DataFrame, list[str]]:
    """Rename headers to the canonical names and keep the schema's columns, in order."""
    by_norm: dict[str, str] = {}
    for col in raw.columns:
        by_norm.setdefault(normalize_header(col), col)
    missing = [c for c in table.column_names if c not in by_norm]
    if missing:
        found = ", ".join(repr(str(c)) for c in raw.columns)
        raise SourceError(
            f"{origin}: required column {missing[0]!r} is missing"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
            + f"; found columns: {found}"
        )
    extra = [str(c) for n, c in by_norm.items() if n not in table.column_names]
    warnings = [f"{origin}: ignored extra column(s) {', '.join(extra)}"] if extra else []
    frame = raw[[by_norm[c] for c in table.column_names]].copy()
    frame.columns = table.column_names
    return frame, warnings


def _drop_trailing_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    blank = frame.apply(lambda s: s.isna() | s.astype(str).str.strip().eq(""), axis=0).all(axis=1)
    if not blank.any() or blank.all():
        return frame.iloc[0:0] if blank.all() else frame
    last = len(blank) - 1 - int(blank[::-1].values.argmin())  # position of the last non-blank row
    return frame.iloc[: last + 1]


def _to_int(series: pd.Series, origin: str, column: str, first_row: int) -> pd.Series:
    values = series.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", None)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & (numeric.isna() | (numeric.notna() & (numeric % 1 != 0)))
    if bad.any():
        pos = int(bad.values.argmax())
        raise SourceError(
            f"{origin}: column {column!r}, row {first_row + pos}: {series.iloc[pos]!r} is not an integer"
            f" ({int(bad.sum())} such value(s))"
        )
    return numeric.astype("Int64")


def type_frame(frame: pd.DataFrame, table: SourceTable, origin: str,
               first_row: int = 2) -> tuple[pd.DataFrame, list[str]]:
    """Cast columns to the schema's types. ``first_row`` is the file row of the first data row (for errors)."""
    out = pd.DataFrame(index=frame.index)
    warnings: list[str] = []
    for col in table.columns:
        s = frame[col.name]
        if col.type == "bigint":
            out[col.name] = _to_int(s, origin, col.name, first_row)
        elif col.type == "timestamp":
            text = s.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", None)
            parsed = pd.to_datetime(text, errors="coerce", format="mixed")
            bad = int((text.notna() & parsed.isna()).sum())
            if bad:
                warnings.append(f"{origin}: {bad} {col.name} value(s) are not valid timestamps and load as NULL")
            out[col.name] = parsed
        else:
            out[col.name] = s.map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    return out.reset_index(drop=True), warnings


def read_workbook(path: Path, sheet: str, table: SourceTable) -> ReadResult:
    origin = f"{path.name}#{sheet}"
    if not path.exists():
        raise SourceError(f"workbook not found: {path}")
    try:
        raw = pd.read_excel(path, sheet_name=sheet, dtype=object, engine="openpyxl")
    except ValueError as exc:
        if "not found" in str(exc).lower():
            raise SourceError(f"{path.name}: sheet {sheet!r} not found ({exc})") from exc
        raise SourceError(f"{path.name}: cannot read sheet {sheet!r}: {exc}") from exc
    except Exception as exc:  # openpyxl raises a variety of errors for corrupt files
        raise SourceError(f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from exc
    frame, warnings = _select_columns(raw, table, origin)
    frame = _drop_trailing_blank_rows(frame)
    typed, more = type_frame(frame, table, origin)
    return ReadResult(table, typed, origin, warnings + more)


def read_dataset_file(folder: Path, table: SourceTable, sheet: str | None = None) -> ReadResult:
    """Read one of the 7 files of a dataset folder in its handed-over format."""
    path = folder / table.file
    if not path.exists():
        raise SourceError(f"dataset file missing: {path}")
    if path.suffix == ".xlsx":
        return read_workbook(path, sheet or "Sheet1", table)
    origin = path.name
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        elif path.suffix == ".json":
            # pandas "columns" orient: {"column": {"row": value}}; keep values as they are
            raw = pd.read_json(path, orient="columns", dtype=False, convert_dates=False)
            raw = raw.sort_index(key=lambda ix: pd.to_numeric(ix, errors="coerce"))
        elif path.suffix == ".csv":
            raw = pd.read_csv(path, dtype=str, keep_default_na=True)
        else:
            raise SourceError(f"{path}: unsupported file type {path.suffix}")
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"{path.name}: cannot read ({type(exc).__name__}: {exc})") from exc
    frame, warnings = _select_columns(raw, table, origin)
    typed, more = type_frame(frame, table, origin)
    return ReadResult(table, typed, origin, warnings + more)


def _plain(value: object) -> object:
    if isinstance(value, str):
        return value
    if value is None or value is pd.NaT or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    return value


def frame_rows(frame: pd.DataFrame) -> list[tuple]:
    """DataFrame rows as plain Python tuples (NA -> None, Timestamp -> datetime, numpy ints -> int)."""
    return [tuple(_plain(v) for v in rec) for rec in frame.astype(object).itertuples(index=False, name=None)]
