"""Tree: the module hierarchy with per-module totals, and each module's own tensors as leaves.

The default view of the CLI and of ``print(report)``. Other groupings (``--by type|dtype|tensor``)
are drawn as the table renderer draws them.
"""

from __future__ import annotations

from paramscope import text
from paramscope.gcpause import paused_gc
from paramscope.records import Role
from paramscope.renderers import RenderOptions
from paramscope.renderers.console import Grid, Styled, draw, footer, header
from paramscope.renderers.rows import dtype_label

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from paramscope.report import ModuleNode, Report

DEFAULT_DEPTH = 3


class _Signatures:
    """What makes two modules look the same in the tree: class, sizes, tensors and children, not the name.

    Each distinct signature is numbered once, so comparing two modules compares two integers, and a parent's
    signature holds its children's numbers rather than their whole subtrees. All are computed on first use
    in one pass, children before parents (reversed preorder: a loop, for a tree may be a thousand deep)."""

    def __init__(self, root: ModuleNode) -> None:
        self.root = root
        self.number: dict[int, int] | None = None  # id(node) -> the number of its signature

    def __call__(self, node: ModuleNode) -> int:
        if self.number is None:
            self.number = self._number_all()
        return self.number[id(node)]

    def _number_all(self) -> dict[int, int]:
        number: dict[int, int] = {}
        known: dict[tuple, int] = {}
        for node in reversed(list(self.root.walk())):
            children = node.children
            signature = (
                node.type, node.parameters, node.trainable, node.buffers, node.bytes, len(node.aliases),
                tuple([(r.name.rpartition(".")[2], r.shape, r.dtype if r.quant is None else dtype_label(r), r.role,
                        r.trainable) for r in node.tensors]),
                tuple([(c.name, number[id(c)]) for c in children]) if children else (),
            )
            number[id(node)] = known.setdefault(signature, len(known))
        return number


def _follows(before: str, name: str) -> bool:
    """Whether ``name`` is the number after ``before`` (both plain ASCII numbers; ``int()`` is not asked to read
    a name of thousands of digits, nor one of other scripts' digits)."""
    if not (name.isascii() and name.isdigit() and before.isascii() and before.isdigit()) or len(name) > 18:
        return False
    return int(name) == int(before) + 1


def _runs(children: list[ModuleNode], signature: _Signatures) -> list[list[ModuleNode]]:
    """Children grouped into runs of identical modules with consecutive numeric names (layers 0, 1, 2 ...)."""
    runs: list[list[ModuleNode]] = []
    for child in children:
        last = runs[-1] if runs else None
        if (
            last is not None
            and _follows(last[-1].name, child.name)
            and signature(child) == signature(last[0])
        ):
            last.append(child)
        else:
            runs.append([child])
    return runs


def _lines(root: ModuleNode, depth: int) -> Iterator[tuple[str, str, Any]]:
    """(guide, kind, item) in display order: a module's own tensors, its aliases, then its children.

    Runs of identical numbered siblings (the 80 decoder layers of a 70B model) are one "run" entry whose
    item is the list of modules; the first one's contents are shown for all. ``root`` is the tree cut at
    ``depth``, so two modules are compared as far down as they are shown. A stack, not recursion.
    """
    signature = _Signatures(root)

    def entries(node: ModuleNode) -> list[tuple[str, Any]]:
        if node.depth >= depth:
            return []
        found: list[tuple[str, Any]] = [("tensor", r) for r in node.tensors]
        found += [("alias", a) for a in node.aliases]
        found += [("module", run[0]) if len(run) == 1 else ("run", run) for run in _runs(node.children, signature)]
        return found

    # each frame: (entries of a module, index of the next one, guide prefix of its rows)
    stack = [(entries(root), 0, "")]
    while stack:
        items, i, prefix = stack.pop()
        if i == len(items):
            continue
        kind, item = items[i]
        last = i == len(items) - 1
        stack.append((items, i + 1, prefix))
        yield prefix + ("└── " if last else "├── "), kind, item
        if kind in ("module", "run"):
            first = item if kind == "module" else item[0]
            stack.append((entries(first), 0, prefix + ("    " if last else "│   ")))


def render(report: Report, options: RenderOptions) -> str:
    if options.by != "module":
        from paramscope.renderers import table

        return table.render(report, options)
    with paused_gc():  # a million-module tree makes as many signatures: collections would walk them all, for nothing
        return _render(report, options)


def _render(report: Report, options: RenderOptions) -> str:
    depth = DEFAULT_DEPTH if options.depth is None else options.depth
    show_trainable = report.frozen not in (None, 0)
    show_buffers = report.buffers > 0
    grid = Grid()  # drawn by rich only for colour: see renderers.console
    grid.add_column("module", no_wrap=True)
    grid.add_column("type / shape", style="cyan", no_wrap=True)
    grid.add_column("parameters", justify="right")
    grid.add_column("%", justify="right")
    if show_trainable:
        grid.add_column("trainable", justify="right")
    if show_buffers:
        grid.add_column("buffers", justify="right")
    grid.add_column("size", justify="right")

    total = report.total

    def add(label: Styled, kind: str, params: str, pct: str, trainable: str, buffers: str, size: str) -> None:
        row = [label, kind, params, pct]
        if show_trainable:
            row.append(trainable)
        if show_buffers:
            row.append(buffers)
        row.append(size)
        grid.add_row(*row)

    def add_module(label: Styled, node: ModuleNode) -> None:
        add(label, text.safe(node.type or ""), text.exact(node.parameters), text.percent(node.parameters, total),
            text.exact(node.trainable), text.exact(node.buffers), text.human_bytes(node.bytes))

    root = report.tree(depth)
    add_module(Styled(text.safe(root.type or text.root_label(report.source)), style="bold"), root)
    collapsed = False
    for guide, kind, item in _lines(root, depth):
        label = Styled(guide, style="dim")
        if kind == "module":
            label.append(text.safe(item.name))
            add_module(label, item)
        elif kind == "run":
            collapsed = True
            count, first = len(item), item[0]
            label.append(f"{text.safe(first.name)}…{text.safe(item[-1].name)}")
            params = first.parameters * count
            trained = None if first.trainable is None else first.trainable * count
            add(label, f"{text.safe(first.type or '')} ×{count}", text.exact(params), text.percent(params, total),
                text.exact(trained), text.exact(first.buffers * count), text.human_bytes(first.bytes * count))
        elif kind == "alias":
            name, canonical = item
            label.append(text.safe(name.rpartition(".")[2]), style="magenta")
            label.append(" → " + text.safe(canonical), style="dim magenta")
            add(label, "tied", "0", "", "", "", "")
        else:
            record = item
            is_buffer = record.role is Role.BUFFER
            label.append(text.safe(record.name.rpartition(".")[2]), style="dim" if is_buffer else "")
            if is_buffer:
                label.append(" (buffer)" if record.persistent is not False else " (buffer, non-persistent)",
                             style="dim")
            elif record.role is not Role.PARAMETER:
                label.append(f" ({record.role.value.replace('_', ' ')})", style="dim")
            elif record.trainable is False:
                label.append(" (frozen)", style="blue")
            shape = f"{text.shape(record.shape)} {dtype_label(record)}"
            count = text.exact(record.numel) if record.initialized else "?"
            size = text.human_bytes(record.nbytes) if record.initialized else "?"
            if is_buffer:
                add(label, shape, "", "", "", count, size)
            else:
                pct = text.percent(record.numel, total) if record.role is Role.PARAMETER else ""
                add(label, shape, count, pct, "", "", size)
    parts = [header(report), Styled(""), grid]
    if collapsed:
        parts.append(Styled("×N: N identical modules in a row, their sizes summed; their contents are shown once, "
                          "for one module.", style="dim"))
    return draw(options, *parts, *footer(report, options))
