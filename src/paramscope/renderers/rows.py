"""The columns of each grouping, defined once for every tabular renderer (table, csv, markdown).

A row is a tuple of raw values (ints, strings, None); each renderer formats them its own way.
"""

from __future__ import annotations

from paramscope.records import Role

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from paramscope.records import TensorRecord
    from paramscope.renderers import Grouping
    from paramscope.report import Report


class Column:
    """A column of a table: its title, whether it holds numbers (aligned right), and how a person-facing renderer
    shows its values (``kind``: "count", "bytes", "percent", "shape" or "text"). A class of its own, not a
    namedtuple: making one of those (compiling its ``__new__``) cost more than drawing a small file's tree."""

    __slots__ = ("kind", "numeric", "title")

    def __init__(self, title: str, numeric: bool = False, kind: str = "text") -> None:
        self.title, self.numeric, self.kind = title, numeric, kind

    def __repr__(self) -> str:
        return f"Column({self.title!r}, {self.numeric!r}, {self.kind!r})"


MODULE_COLUMNS = (
    Column("module"), Column("type"), Column("parameters", True, "count"), Column("percent", True, "percent"),
    Column("trainable", True, "count"), Column("buffers", True, "count"), Column("bytes", True, "bytes"),
)
TYPE_COLUMNS = (
    Column("type"), Column("modules", True, "count"), Column("parameters", True, "count"),
    Column("percent", True, "percent"), Column("bytes", True, "bytes"),
)
COMPONENT_COLUMNS = (
    Column("component (inferred from names)"), Column("modules", True, "count"), Column("parameters", True, "count"),
    Column("percent", True, "percent"), Column("bytes", True, "bytes"),
)
"""``--by type`` where the source names no module classes (every file): the components of
:mod:`paramscope.components`, titled as what they are, an inference from names and shapes."""
DTYPE_COLUMNS = (
    Column("dtype"), Column("parameters", True, "count"), Column("buffers", True, "count"),
    Column("bytes", True, "bytes"),
)
TENSOR_COLUMNS = (
    Column("name"), Column("shape", kind="shape"), Column("dtype"), Column("role"),
    Column("trainable"), Column("numel", True, "count"), Column("bytes", True, "bytes"), Column("tied_to"),
)


def percent(part: int, whole: int) -> float | None:
    from paramscope.text import share

    return share(part, whole)


def module_rows(report: Report, depth: int | None) -> Iterator[tuple[Any, ...]]:
    total = report.total
    for node in report.modules(depth):
        yield (node.path, node.type, node.parameters, percent(node.parameters, total), node.trainable,
               node.buffers, node.bytes)


def type_rows(report: Report) -> Iterator[tuple[Any, ...]]:
    """Rows by module class, or by component where the source names no class (:data:`COMPONENT_COLUMNS`)."""
    for row in report.by_type if report.types_known else report.by_component:
        yield (row.type, row.modules, row.parameters, percent(row.parameters, report.total), row.bytes)


def dtype_rows(report: Report) -> Iterator[tuple[Any, ...]]:
    for row in report.by_dtype:
        yield (row.dtype, row.parameters, row.buffers, row.bytes)


def dtype_label(record: TensorRecord) -> str:
    """The stored dtype, and for a packed or quantized tensor the scheme and bits per weight it stands for
    (``int32 → gptq 4-bit``): the shape and dtype alone would not explain its count."""
    quant = record.quant
    if quant is None:
        return record.dtype
    bits = f" {quant.bits:g}-bit" if quant.bits is not None else " (bits unknown)"
    return f"{record.dtype} → {quant.scheme}{bits}"


def tensor_rows(report: Report, records=None) -> Iterator[tuple[Any, ...]]:
    canonical = report.canonical_name
    for r in report.natural_tensors if records is None else records:
        tied = canonical.get(r.name)
        yield (r.name, r.shape, dtype_label(r), r.role.value, r.trainable if r.role is Role.PARAMETER else None,
               r.numel if r.initialized else None, r.nbytes if r.initialized else None,
               tied if tied != r.name else None)


def table(report: Report, by: Grouping, depth: int | None) -> tuple[tuple[Column, ...], list[tuple[Any, ...]]]:
    """Columns and rows of ``report`` grouped ``by`` module, type, dtype or tensor."""
    if by == "module":
        return MODULE_COLUMNS, list(module_rows(report, depth))
    if by == "type":
        return TYPE_COLUMNS if report.types_known else COMPONENT_COLUMNS, list(type_rows(report))
    if by == "dtype":
        return DTYPE_COLUMNS, list(dtype_rows(report))
    if by == "tensor":
        return TENSOR_COLUMNS, list(tensor_rows(report))
    raise ValueError(f"unknown grouping {by!r}")


def summary(report: Report) -> list[tuple[str, Any]]:
    """The headline figures, in the order every renderer shows them."""
    items: list[tuple[str, Any]] = [
        ("parameters", report.total),
    ]
    if report.stored_elements != report.total:
        items.append(("stored elements", report.stored_elements))
    active = report.active
    if active is not None:
        items.append(("active per token", active))
    items += [
        ("trainable", report.trainable),
        ("frozen", report.frozen),
        ("non-embedding", report.non_embedding),
        ("buffers", report.buffers),
    ]
    items += [(role.replace("_", " "), n) for role, n in report.other.items()]
    items.append(("bytes", report.bytes))
    return items


def display(column: Column, value: Any) -> str:
    """A cell as a person reads it: exact counts with separators, sizes in KiB/MiB/GiB, safe names."""
    from paramscope import text

    if value is None:
        return "-"
    if column.title == "module" and value == "":
        return "(root)"
    if column.kind == "count":
        return text.exact(value)
    if column.kind == "bytes":
        return text.human_bytes(value)
    if column.kind == "percent":
        return text.percent_of(value)
    if column.kind == "shape":
        return text.shape(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return text.safe(str(value))
