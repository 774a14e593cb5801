"""``paramscope diff`` for a person (text, markdown) or a program (JSON): a :class:`~paramscope.diff.Diff`
in, text out. The comparison itself, and every figure shown, is :mod:`paramscope.diff`'s."""

from __future__ import annotations

import json

from paramscope import text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from paramscope.diff import Diff

TEXT_LIMIT = 50
"""Rows of each list in text and markdown (JSON lists all)."""


def _delta(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return f"{text.exact(a)} -> {text.exact(b)}"
    if a == b:
        return f"{text.exact(a)} (same)"
    return f"{text.exact(a)} -> {text.exact(b)} ({b - a:+,})"


def _limited(items: list[str], indent: str = "  ") -> list[str]:
    lines = [indent + item for item in items[:TEXT_LIMIT]]
    if len(items) > TEXT_LIMIT:
        lines.append(f"{indent}... and {len(items) - TEXT_LIMIT} more (--format json lists all)")
    return lines


def _verdict(diff: Diff, strict: bool) -> str:
    if diff.identical:
        return "identical: same names, shapes, dtypes and ties"
    if diff.equivalent:
        extra = "dtypes" if diff.dtype_changes else "ties"
        if diff.dtype_changes and diff.tie_changes:
            extra = "dtypes and ties"
        return f"equivalent: same names and shapes; {extra} differ" + (" (--strict: counts as different)"
                                                                        if strict else "")
    return "different: " + ", ".join(
        f"{n} {what}" for n, what in ((len(diff.only_in_a), "only in A"), (len(diff.only_in_b), "only in B"),
                                       (len(diff.shape_changes), "shape changes")) if n
    )


def render_text(diff: Diff, strict: bool = False, markdown: bool = False) -> str:
    """The diff for a person: verdict, totals, then each list (at most :data:`TEXT_LIMIT` rows each)."""
    code = "`" if markdown else ""
    head = "## " if markdown else ""
    bullet = "- " if markdown else "  "

    def name(n: str) -> str:
        safe = text.safe(n)
        return f"`{safe.replace('`', '')}`" if markdown else safe

    lines = [
        f"{head}paramscope diff",
        "",
        f"{bullet}A: {code}{text.safe(diff.a.source)}{code} ({diff.a.format})",
        f"{bullet}B: {code}{text.safe(diff.b.source)}{code} ({diff.b.format})",
        f"{bullet}verdict: {_verdict(diff, strict)}",
        f"{bullet}parameters: {_delta(diff.a.parameters, diff.b.parameters)}",
        f"{bullet}buffers: {_delta(diff.a.buffers, diff.b.buffers)}",
        f"{bullet}bytes: {_delta(diff.a.bytes, diff.b.bytes)}",
    ]
    if not diff.normalized:
        lines.append(f"{bullet}names compared as stored (--no-normalize)")
    lines += [f"{bullet}normalised: {d}" for d in diff.normalisation]

    def section(title: str, items: list[str]) -> None:
        if items:
            lines.extend(["", f"{title} ({len(items)}):"])
            lines.extend(_limited(items, bullet))

    section("only in A (missing from B)", [name(n) for n in diff.only_in_a])
    section("only in B (unexpected in A)", [name(n) for n in diff.only_in_b])
    section("shape changes", [f"{name(c.name)}: {text.shape(c.a)} -> {text.shape(c.b)}" for c in diff.shape_changes])
    section("dtype changes", [f"{name(c.name)}: {c.a} -> {c.b}" for c in diff.dtype_changes])
    section("tied differently", [f"{name(c.name)}: A ties {', '.join(c.a)}; B ties {', '.join(c.b)}"
                                 for c in diff.tie_changes])
    section("stored under another name of its tie group (loads)", [name(n) for n in diff.tie_covered])
    section("non-persistent buffers on one side only (not saved; ignored)",
            [name(n) for n in diff.ignored_non_persistent])
    changed = [m for m in diff.modules if m.a != m.b and m.path]
    section("modules with different parameter counts",
            [f"{name(m.path)}: {_delta(m.a, m.b)}" for m in changed])
    lines += ["", *(f"note: {n}" for n in diff.notes)] if diff.notes else []
    return "\n".join(lines) + "\n"


def render(diff: Diff, fmt: str, strict: bool = False) -> str:
    """``diff`` as ``text``, ``markdown`` or ``json`` (one document under key ``"diff"``)."""
    if fmt == "json":
        doc = {"diff": diff.to_dict(), "strict": strict, "exit_code": diff.exit_code(strict)}
        return json.dumps(doc, indent=2, ensure_ascii=True, default=str) + "\n"
    if fmt in ("text", "markdown"):
        return render_text(diff, strict, markdown=fmt == "markdown")
    raise ValueError(f"unknown format {fmt!r}; choose from text, markdown, json")
