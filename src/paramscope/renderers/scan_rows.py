"""``paramscope scan``'s rows as a table, CSV, JSON Lines or Parquet, streamed: each row is written as it
comes and nothing but the current batch is held (Parquet writes batches of :data:`BATCH` rows).

Row strings reach here already escaped (:func:`paramscope.scan.read_row` passes names through
:func:`paramscope.text.safe`); CSV cells are also neutralised against spreadsheet formulas, as everywhere.
"""

from __future__ import annotations

import json

from paramscope.text import human, human_bytes, safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

SCAN_FORMATS = ("table", "csv", "jsonl", "parquet")
BATCH = 1_000

# column -> (heading, width) of the text table; a longer value is cut with "…" (rows are streamed, so widths
# cannot follow the data)
TABLE_COLUMNS = {
    "source": ("SOURCE", 40), "formats": ("FORMAT", 12), "parameters": ("PARAMS", 9), "active": ("ACTIVE", 9),
    "stored_bytes": ("STORED", 10), "dtypes": ("DTYPES", 16), "quantization": ("QUANT", 10),
    "tie_groups": ("TIES", 4), "files": ("FILES", 5), "safety": ("SAFETY", 11), "inference_bytes": ("INFER", 10),
    "training_bytes": ("TRAIN", 10), "error": ("ERROR", 0),
}
_BYTES = frozenset({"stored_bytes", "inference_bytes", "training_bytes"})
_COUNTS = frozenset({"parameters", "active"})


def _cut(text: str, width: int) -> str:
    return text if width == 0 or len(text) <= width else text[: width - 1] + "…"


def _shown(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in _BYTES:
        return human_bytes(value)
    if column in _COUNTS:
        return human(value)
    return safe(str(value))


def table_lines(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    shown = [c for c in columns if c in TABLE_COLUMNS]
    numeric = _BYTES | _COUNTS | {"tie_groups", "files"}

    def line(cells: list[str]) -> str:
        parts = []
        for column, cell in zip(shown, cells, strict=True):
            width = TABLE_COLUMNS[column][1]
            cell = _cut(cell, width)
            parts.append(cell if width == 0 else (cell.rjust(width) if column in numeric else cell.ljust(width)))
        return "  ".join(parts).rstrip() + "\n"

    yield line([TABLE_COLUMNS[c][0] for c in shown])
    for row in rows:
        yield line([_shown(c, row.get(c)) if c != "error" else safe(row.get("error") or "") for c in shown])


def csv_lines(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    from paramscope.renderers.csv import _cell

    yield ",".join(columns) + "\r\n"
    for row in rows:
        yield ",".join(_cell(row.get(c)) for c in columns) + "\r\n"


def jsonl_lines(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    for row in rows:
        yield json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n"


def write_parquet(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], path: str,
                  int_columns: frozenset[str]) -> None:
    """Rows to a Parquet file at ``path``, :data:`BATCH` at a time (pyarrow: the ``paramscope[parquet]`` extra)."""
    from paramscope.errors import require

    pa = require("pyarrow", extra="parquet", source=path, purpose="--format parquet")
    pq = require("pyarrow.parquet", extra="parquet", source=path, purpose="--format parquet")
    schema = pa.schema([(c, pa.int64() if c in int_columns else pa.string()) for c in columns])
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append({c: row.get(c) for c in columns})
            if len(batch) >= BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
