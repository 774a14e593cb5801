"""The aggregation: one pass over the records of an :class:`~paramscope.records.Inventory` gives every
figure paramscope reports. The counting rules live here and nowhere else.

Counting rules
--------------
* **Shared storage is counted once.** Records with the same ``tie_key`` (one ``nn.Parameter`` reached
  under several names — a tied embedding and output head, a submodule used twice — or tensors of a
  checkpoint that alias one storage) form a *tie group*. The first name seen is the group's
  canonical name; the group counts once, under that name's module, in every total, per-module,
  per-type and per-dtype figure. The other names are listed in ``ties`` and shown as "tied to".
* **total** is the number of parameter elements (``role == parameter``); packed or quantized tensors
  count the logical weights they stand for, not their storage words.
* **trainable / frozen** split ``total`` by ``requires_grad``; both are None where a source cannot know
  (a checkpoint file does not say what was frozen).
* **buffers** counts buffer elements apart from parameters (BatchNorm statistics, position ids; in a
  file, every integer or bool tensor, since PyTorch cannot train those).
* **bytes** is the storage of parameters and buffers together, each tie group once.
* **non-embedding** is ``total`` less the weights of embedding modules (``nn.Embedding``,
  ``nn.EmbeddingBag``). A tied output head is the same tensor as the embedding it is tied to, so it is
  neither counted twice nor left behind: the whole tie group goes.
* Uninitialized tensors (lazy modules before their first forward) count nothing and are listed apart.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from paramscope.records import Inventory, Role, TensorRecord

SCHEMA = "paramscope.report/1"
EMBEDDING_TYPES = frozenset({"Embedding", "EmbeddingBag"})

NON_EMBEDDING_RULE = (
    "non-embedding = all parameters except the weights of nn.Embedding / nn.EmbeddingBag modules; "
    "a head tied to an embedding is that same tensor, so it goes with it and is never counted twice"
)


@dataclass
class ModuleNode:
    """A module and the figures of its subtree. Each tie group counts under its canonical name only."""

    path: str
    type: str | None
    parameters: int = 0
    trainable: int | None = 0
    buffers: int = 0
    bytes: int = 0
    tensors: list[TensorRecord] = field(default_factory=list)
    """Tensors held directly by this module and counted here."""
    aliases: list[tuple[str, str]] = field(default_factory=list)
    """(name here, canonical name) for tied tensors held here but counted elsewhere."""
    children: list[ModuleNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1

    def walk(self, depth: int | None = None) -> Iterable[ModuleNode]:
        """This node and its descendants, depth first, down to ``depth`` levels below the root."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if depth is None or node.depth < depth:
                stack.extend(reversed(node.children))


@dataclass(frozen=True)
class TypeTotal:
    type: str
    modules: int
    parameters: int
    bytes: int


@dataclass(frozen=True)
class DTypeTotal:
    dtype: str
    parameters: int
    buffers: int
    bytes: int


class Report:
    """Every figure about one model, computed from its records by the rules in this module's docstring."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        groups: dict[Hashable, list[TensorRecord]] = {}
        for record in inventory.tensors:
            groups.setdefault(record.tie_key, []).append(record)
        self._groups = groups

    # ---- what the source said -------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.inventory.source

    @property
    def format(self) -> str:
        return self.inventory.format

    @property
    def tensors(self) -> list[TensorRecord]:
        """Every record, aliases included, in the order the source gave them."""
        return self.inventory.tensors

    @property
    def metadata(self) -> dict[str, Any]:
        return self.inventory.metadata

    @property
    def notes(self) -> list[str]:
        return self.inventory.notes

    # ---- counting -------------------------------------------------------------------------
    @cached_property
    def unique(self) -> list[TensorRecord]:
        """One record per tie group (its canonical, first-seen name), uninitialized ones left out."""
        return [group[0] for group in self._groups.values() if group[0].initialized]

    @cached_property
    def canonical_name(self) -> dict[str, str]:
        """Name -> canonical name of its tie group, for every name in a group of two or more."""
        return {r.name: group[0].name for group in self._groups.values() if len(group) > 1 for r in group}

    def _sum(self, role: Role, trainable: bool | None = None) -> int:
        return sum(
            r.numel
            for r in self.unique
            if r.role is role and (trainable is None or r.trainable is trainable)
        )

    @cached_property
    def total(self) -> int:
        """Parameter elements, each tie group once."""
        return self._sum(Role.PARAMETER)

    @cached_property
    def _trainability_known(self) -> bool:
        return all(r.trainable is not None for r in self.unique if r.role is Role.PARAMETER)

    @cached_property
    def trainable(self) -> int | None:
        """Parameters with ``requires_grad``; None where the source cannot know."""
        return self._sum(Role.PARAMETER, True) if self._trainability_known else None

    @cached_property
    def frozen(self) -> int | None:
        """Parameters without ``requires_grad``; None where the source cannot know."""
        return self._sum(Role.PARAMETER, False) if self._trainability_known else None

    @cached_property
    def buffers(self) -> int:
        """Buffer elements, each tie group once."""
        return self._sum(Role.BUFFER)

    @cached_property
    def other(self) -> dict[str, int]:
        """Elements of roles that are neither parameters nor buffers (optimizer state, quant bookkeeping)."""
        counts: dict[str, int] = {}
        for r in self.unique:
            if r.role not in (Role.PARAMETER, Role.BUFFER):
                counts[r.role.value] = counts.get(r.role.value, 0) + r.numel
        return counts

    def _bytes(self, roles: tuple[Role, ...]) -> int | None:
        total = 0
        for r in self.unique:
            if r.role in roles:
                size = r.nbytes
                if size is None:
                    return None
                total += size
        return total

    @cached_property
    def parameter_bytes(self) -> int | None:
        return self._bytes((Role.PARAMETER,))

    @cached_property
    def buffer_bytes(self) -> int | None:
        return self._bytes((Role.BUFFER,))

    @cached_property
    def bytes(self) -> int | None:
        """Storage of parameters and buffers, each tie group once; None if a dtype is unknown."""
        return self._bytes((Role.PARAMETER, Role.BUFFER))

    @cached_property
    def ties(self) -> list[list[str]]:
        """Tie groups of two or more names, canonical name first."""
        return [[r.name for r in group] for group in self._groups.values() if len(group) > 1]

    @cached_property
    def uninitialized(self) -> list[str]:
        """Names of tensors whose shape is not known yet (lazy modules before a dry run)."""
        return [r.name for r in self.tensors if not r.initialized]

    @cached_property
    def _embedding_keys(self) -> set[Hashable]:
        return {
            key
            for key, group in self._groups.items()
            if any(r.owner_type in EMBEDDING_TYPES and r.name.rpartition(".")[2] == "weight" for r in group)
        }

    @cached_property
    def embedding(self) -> int:
        """Parameters in embedding weights (tied heads included: they are the same tensors)."""
        keys = self._embedding_keys
        return sum(r.numel for r in self.unique if r.role is Role.PARAMETER and r.tie_key in keys)

    @cached_property
    def non_embedding(self) -> int:
        """``total`` less embedding weights. The rule: :data:`NON_EMBEDDING_RULE`."""
        return self.total - self.embedding

    # ---- groupings ------------------------------------------------------------------------
    @cached_property
    def by_type(self) -> list[TypeTotal]:
        """Parameters per class of the module holding them, largest first."""
        params: dict[str, int] = {}
        sizes: dict[str, int] = {}
        modules: dict[str, set[str]] = {}
        for r in self.unique:
            if r.role is not Role.PARAMETER:
                continue
            kind = r.owner_type or self.inventory.module_types.get(r.module) or "(unknown)"
            params[kind] = params.get(kind, 0) + r.numel
            sizes[kind] = sizes.get(kind, 0) + (r.nbytes or 0)
            modules.setdefault(kind, set()).add(r.module)
        rows = [TypeTotal(k, len(modules[k]), params[k], sizes[k]) for k in params]
        return sorted(rows, key=lambda t: (-t.parameters, t.type))

    @cached_property
    def by_dtype(self) -> list[DTypeTotal]:
        """Elements and bytes per stored dtype, largest first."""
        rows: dict[str, list[int]] = {}
        for r in self.unique:
            if r.role not in (Role.PARAMETER, Role.BUFFER):
                continue
            row = rows.setdefault(r.dtype, [0, 0, 0])
            row[0 if r.role is Role.PARAMETER else 1] += r.numel
            row[2] += r.nbytes or 0
        totals = [DTypeTotal(d, p, b, n) for d, (p, b, n) in rows.items()]
        return sorted(totals, key=lambda t: (-t.bytes, t.dtype))

    def top(self, k: int) -> list[TensorRecord]:
        """The ``k`` largest tensors (tie groups once), largest first; ties in size keep source order."""
        return sorted(self.unique, key=lambda r: -r.numel)[:k]

    @cached_property
    def _root(self) -> ModuleNode:
        types = self.inventory.module_types
        nodes: dict[str, ModuleNode] = {"": ModuleNode("", types.get(""))}

        def node_for(path: str) -> ModuleNode:
            node = nodes.get(path)
            if node is None:
                parent = node_for(path.rpartition(".")[0])
                node = nodes[path] = ModuleNode(path, types.get(path))
                parent.children.append(node)
            return node

        trainable_known = self._trainability_known
        for group in self._groups.values():
            head = group[0]
            for alias in group[1:]:
                node_for(alias.module).aliases.append((alias.name, head.name))
            if not head.initialized:
                node_for(head.module).tensors.append(head)
                continue
            node = node_for(head.module)
            node.tensors.append(head)
            numel, size = head.numel, head.nbytes or 0
            is_param = head.role is Role.PARAMETER
            is_buffer = head.role is Role.BUFFER
            trained = is_param and head.trainable is True
            path = head.module
            while True:
                target = nodes[path]
                if is_param:
                    target.parameters += numel
                    if trained:
                        target.trainable += numel  # type: ignore[operator]
                elif is_buffer:
                    target.buffers += numel
                if is_param or is_buffer:
                    target.bytes += size
                if not path:
                    break
                path = path.rpartition(".")[0]
        if not trainable_known:
            for node in nodes.values():
                node.trainable = None
        return nodes[""]

    def tree(self, depth: int | None = None) -> ModuleNode:
        """The module tree; below ``depth`` levels, nodes keep their totals but lose their children."""
        if depth is None:
            return self._root

        def cut(node: ModuleNode) -> ModuleNode:
            kids = [] if node.depth >= depth else [cut(c) for c in node.children]
            return replace(node, children=kids)

        return cut(self._root)

    def modules(self, depth: int | None = None) -> list[ModuleNode]:
        """The tree flattened depth first (root first), down to ``depth``."""
        return list(self._root.walk(depth))

    # ---- derived reports ------------------------------------------------------------------
    def filter(
        self,
        *,
        pattern: str | None = None,
        trainable_only: bool = False,
        include_buffers: bool = True,
        exclude_embeddings: bool = False,
    ) -> Report:
        """A report on a subset of the tensors, counted by the same rules.

        ``pattern`` is a shell glob matched against tensor names (``*attn*``, ``encoder.layer.0.*``).
        ``trainable_only`` keeps parameters with ``requires_grad``; ``include_buffers=False`` drops
        buffers; ``exclude_embeddings`` drops embedding weights and everything tied to them.
        """
        embedding = self._embedding_keys if exclude_embeddings else set()

        def keep(r: TensorRecord) -> bool:
            if pattern is not None and not fnmatch.fnmatchcase(r.name, pattern):
                return False
            if trainable_only and not (r.role is Role.PARAMETER and r.trainable is True):
                return False
            if not include_buffers and r.role is Role.BUFFER:
                return False
            return r.tie_key not in embedding

        kept = [r for r in self.tensors if keep(r)]
        return Report(replace(self.inventory, tensors=kept))

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """The JSON document described in ``docs/json-schema.md`` (schema ``paramscope.report/1``)."""
        from paramscope.renderers.json import report_to_dict

        return report_to_dict(self, depth=depth)

    def __str__(self) -> str:
        from paramscope.renderers import RenderOptions, render

        return render(self, "tree", RenderOptions(color=False))

    def __repr__(self) -> str:
        return (
            f"<Report {self.source!r} total={self.total} trainable={self.trainable} "
            f"buffers={self.buffers} tensors={len(self.tensors)}>"
        )
