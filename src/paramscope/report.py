"""The aggregation: one pass over the records of an :class:`~paramscope.records.Inventory` gives every
figure paramscope reports. The counting rules live here and nowhere else (the per-module parameters
``paramscope diff`` compares included: :func:`module_parameters`).

A report is a plain model: it imports no renderer. ``str(report)``, :meth:`Report.to_dict`,
:meth:`Report._repr_html_` and :meth:`Report.to_pandas` go through :data:`VIEWS`, which the renderers
fill (:mod:`paramscope.renderers.views`, loaded by ``import paramscope``).

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
* **bytes** is the storage of parameters, buffers and quantization bookkeeping (``quant_aux``: the scales
  and zero points a packed weight cannot be read without) together, each tie group once; optimizer state
  is not included. The same rule gives each module's bytes. A tied name the file stores a second time (a
  *stored copy*, :mod:`paramscope.ties`: the GGUF ``output.weight`` llama.cpp writes beside GPT-2's
  ``token_embd.weight``) adds its bytes here and its elements to ``stored_elements``, never to ``total``:
  ``bytes`` and ``stored_elements`` describe what the file holds, ``total`` the model.
* **non-embedding** is ``total`` less the weights of embedding modules (``nn.Embedding``,
  ``nn.EmbeddingBag``; in files, which do not record classes, modules named like an embedding:
  ``embed_tokens``, ``wte``, ``wpe``, ``word_embeddings``, ``token_embd``, see :data:`EMBEDDING_NAME`).
  A tied output head is the same tensor as the embedding it is tied to, so it is
  neither counted twice nor left behind: the whole tie group goes.
* Uninitialized tensors (lazy modules before their first forward) count nothing and are listed apart.
* **stored_elements** is the parameter elements as stored, each tie group once: a packed int32
  ``qweight`` counts its words, not the eight 4-bit weights in each, and a stored copy counts again. It
  equals ``total`` unless packed quantization or a stored copy is present. Quantization bookkeeping
  (scales, zero points, group indices, bitsandbytes ``quant_state``) has ``role == quant_aux``: it is in
  ``other``, never in ``total``.
* **active** (mixture of experts; None for a dense model, i.e. one without ``metadata["moe"]``) is the
  parameters one token passes through: every parameter that is not a routed expert (attention,
  embeddings, norms, router, shared experts, dense layers) plus the routed-expert parameters times
  ``experts_per_token / experts``, rounded to the nearest integer (exact when the experts are equal in
  size, as they are). Routed experts are found by name, see :mod:`paramscope.moe`.
* **size_label** names the size the way model names do: for a dense model ``total`` in the largest unit
  it reaches (K, M, B, T) rounded to a whole number, one decimal kept below 2 of that unit (GPT-2
  124,439,808 -> ``124M``; Llama-2-7B 6,738,415,616 -> ``7B``; 1,100,048,384 -> ``1.1B``). For a mixture
  of experts ``E x`` the size of one expert path, i.e. the non-routed parameters plus one expert's share
  (``total - routed + routed / E``): Mixtral-8x7B -> ``8x7B``.
"""

from __future__ import annotations

import functools
import re
from collections import namedtuple
from functools import cached_property
from itertools import compress, islice, pairwise, repeat
from operator import is_not, lt

from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import MAX_NAME_LENGTH, MAX_NAME_PARTS, Inventory, Role, Table, TensorRecord, sized
from paramscope.report_views import VIEWS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable
    from typing import Any


def _view(name: str) -> Callable[..., Any]:
    view = VIEWS.get(name)
    if view is None:  # only when paramscope.report was loaded without its package, which Python never does
        raise LookupError(f"no {name!r} view registered: import paramscope.renderers.views")
    return view

# Limits on the names every source hands over (MAX_NAME_LENGTH, MAX_NAME_PARTS: records.py) are checked once,
# here; each dotted part is a module the tree would build.
MAX_TREE_TEXT = 128 * 1024 * 1024
"""Characters of module paths in one module tree. Each module's path repeats its parent's, so names near
both limits above would make a tree quadratic in the input (a 64 KiB name of 1,000 parts alone would spell
out 32 MiB of paths); an honest 1,000,000-tensor checkpoint needs about a tenth of this."""
_TREE_TEXT_REASON = (f"the module paths of its tensor names add up to more than {MAX_TREE_TEXT:,} characters (names "
                     "nest too deeply to list; try a smaller --depth)")
EMBEDDING_TYPES = frozenset({"Embedding", "EmbeddingBag"})
EMBEDDING_CLASS_ENDINGS = ("Embedding", "EmbeddingBag")
"""A module class whose name ends so is taken as an embedding subclass (GemmaScaledWordEmbedding): a source
records the holder's class name, not its bases."""

# Files do not record module classes; there the module's own name decides (GPT-2's wte/wpe, Llama's
# embed_tokens, BERT's word/position/token_type embeddings, GGUF's token_embd).
EMBEDDING_WORDS = ("embed", "embeds", "embedding", "embeddings", "embed_tokens", "tok_embeddings", "token_embd",
                   "wte", "wpe")
EMBEDDING_NAME = rf"(?:^|[._])(?:{'|'.join(EMBEDDING_WORDS)})$"
"""The rule as a regular expression: a module named one of the words, or ending in '.' or '_' and one of them."""
_EMBEDDING_ENDINGS = tuple(sep + word for word in EMBEDDING_WORDS for sep in "._")
_EMBEDDING_MODULES = frozenset(EMBEDDING_WORDS)
_EMBEDDING_LAST = frozenset(word[-1] for word in EMBEDDING_WORDS)
"""The last characters of the words: the character before ``.weight`` in an embedding weight's name."""


def _named_like_embedding(module: str) -> bool:
    """:data:`EMBEDDING_NAME`'s test, as two string tests in C: compiling the expression cost 1% of a small file's
    whole run (issue 12), more than testing every name of a checkpoint. (The expression's ``$`` would also match
    before a final newline; the name's end here, as the cheap ``.weight`` test before it has it.)"""
    return module in _EMBEDDING_MODULES or module.endswith(_EMBEDDING_ENDINGS)

NON_EMBEDDING_RULE = (
    "non-embedding = all parameters except the weights of nn.Embedding / nn.EmbeddingBag modules "
    "(in files, which do not name module classes: modules named like embed_tokens, wte, wpe, *_embeddings); "
    "a head tied to an embedding is that same tensor, so it goes with it and is never counted twice"
)


_LABEL_UNITS = (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))


def size_label(n: int) -> str:
    """A parameter count as a model name states it: whole units, one decimal below 2 units (``1.1B``)."""
    for index, (suffix, scale) in enumerate(_LABEL_UNITS):
        if n >= scale:
            if n < 2 * scale:
                tenths = (20 * n + scale) // (2 * scale)  # to the nearest tenth, halves up
                return f"{tenths // 10}.{tenths % 10}{suffix}".replace(".0" + suffix, suffix)
            whole = (2 * n + scale) // (2 * scale)
            if whole >= 1000 and index > 0:
                return size_label(whole * scale)
            return f"{whole}{suffix}"
    return str(n)


def check_names(source: str, records: list[TensorRecord] | list[str]) -> None:
    """Refuse a tensor name longer than :data:`MAX_NAME_LENGTH` or of more than :data:`MAX_NAME_PARTS` parts.

    Every source's records (or their names, a table's column) reach a report through here, so the limits hold
    for all formats at once."""
    if not records:
        return
    names = records if type(records[0]) is str else [r.name for r in records]
    # a name of MAX_NAME_PARTS parts has MAX_NAME_PARTS - 1 dots, so only that long a name needs counting; both
    # limits are looked at over every name in C, and the names gone through one by one only to say which broke one
    longest = max(map(len, names))
    if longest < MAX_NAME_PARTS - 1:
        return
    if longest <= MAX_NAME_LENGTH and max(map(str.count, names, repeat("."))) < MAX_NAME_PARTS:
        return
    for name in names:
        length = len(name)
        if length > MAX_NAME_LENGTH:
            problem = f"is {length:,} characters long (at most {MAX_NAME_LENGTH:,} are read)"
        elif length >= MAX_NAME_PARTS - 1 and name.count(".") >= MAX_NAME_PARTS:
            problem = f"has {name.count('.') + 1:,} dotted parts (modules nest at most {MAX_NAME_PARTS:,} deep)"
        else:
            continue
        from paramscope.text import safe

        raise ParamscopeError(source, f'tensor name "{safe(name[:40])}…" {problem}')


_NONE: Any = ()
_new = object.__new__
_COLUMN_SPARSE = frozenset({"quant"})
"""The sparse fields a report counted over columns handles (:attr:`Report._packed`); any other (a tie, known
trainability, an owner class) has the report count record by record."""


class _Held(list):  # type: ignore[type-arg]
    """Indices into ``table`` of the tensors a module holds: what a tree built over columns keeps, so that a
    module's records are made only when someone reads them (a JSON document of 134,699 modules never does)."""

    __slots__ = ("table",)


_SAMPLED_NAMES = 4096
_SHORT_RUNS = 8
"""Report._cut_tree's test of the order of names: over the first :data:`_SAMPLED_NAMES`, runs of fewer than this
many names on average mean a Python step for a few names each, slower than grouping every name in C
(``_cut_tree_counted``: 100,000 shuffled names take 280 ms by runs and 100 ms counted; in a header's order, 25
and 70)."""


def _hold(node: ModuleNode, index: int, table: Any) -> None:
    """Note that ``node`` holds the table's tensor ``index`` itself (its record is made only if read)."""
    held = node._held
    if held:
        held.append(index)  # type: ignore[arg-type]
    else:
        held = node._held = _Held((index,))
        held.table = table


class ModuleNode:
    """A module and the figures of its subtree. Each tie group counts under its canonical name only.

    ``tensors`` are the tensors held directly by this module and counted here; ``aliases`` are
    (name here, canonical name) pairs for tied tensors held here but counted elsewhere.
    """

    __slots__ = ("_held", "_rows", "aliases", "buffers", "bytes", "children", "parameters", "path", "trainable",
                 "type")

    def __init__(self, path: str, type: str | None) -> None:
        self.path = path
        self.type = type
        self.parameters = 0
        self.trainable: int | None = 0
        self.buffers = 0
        self.bytes = 0
        # Empty until something is added: a shared empty tuple, not three new lists for each of a million
        # leaf modules. A report's tree is read-only; the build replaces them with lists.
        self._held: list[TensorRecord] | _Held | int = _NONE
        self._rows: tuple[list[TensorRecord], list[int]] | None = None  # what an int in _held indexes
        self.aliases: list[tuple[str, str]] = _NONE
        self.children: list[ModuleNode] = _NONE

    @property
    def tensors(self) -> list[TensorRecord]:
        """The records of the tensors this module holds itself (made from a table's columns on first use)."""
        held = self._held
        if type(held) is _Held:
            row = held.table.row
            held = self._held = [row(i) for i in held]
        elif type(held) is int:  # module k of a live walk (_WalkTree): its records, listed once read
            records, starts = self._rows  # type: ignore[misc]
            held = self._held = records[starts[held]:starts[held + 1]]
        return held  # type: ignore[return-value]

    @tensors.setter
    def tensors(self, value: list[TensorRecord]) -> None:
        self._held = value

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

    def pruned(self, depth: int) -> ModuleNode:
        """A copy whose descendants below ``depth`` levels are dropped (their figures stay in the totals).

        Iterative: a name may nest a thousand modules deep (:data:`MAX_NAME_PARTS`)."""
        top = self._copy()
        stack = [(self, top)]
        while stack:
            node, copy = stack.pop()
            if node.depth < depth:
                copy.children = [child._copy() for child in node.children]
                stack.extend(zip(node.children, copy.children, strict=True))
        return top

    def _copy(self) -> ModuleNode:
        """The node without its children (figures, tensors and aliases shared)."""
        copy = ModuleNode(self.path, self.type)
        copy.parameters, copy.trainable = self.parameters, self.trainable
        copy.buffers, copy.bytes = self.buffers, self.bytes
        copy._held, copy._rows, copy.aliases = self._held, self._rows, self.aliases
        return copy

    def __repr__(self) -> str:
        return f"<ModuleNode {self.path!r} {self.type} parameters={self.parameters}>"


class _WalkNode(ModuleNode):
    """The root of a live model's tree (:class:`_WalkTree`): its figures set when it is made, the nodes below it made
    when its children are first read. Until then the ``children`` slot is left unset, so that read falls through to
    :meth:`__getattr__`, which makes them and sets the slot (every later read is a plain slot's)."""

    __slots__ = ("_of",)

    def __getattr__(self, name: str) -> Any:
        if name != "children":
            raise AttributeError(name)
        kids = self.children = self._of.build(self)
        return kids


class _WalkTree:
    """A live model's module tree as the walk saw it (:class:`~paramscope.records.ModuleWalk`), down to ``depth``
    levels: the tree :meth:`Report._build_tree` makes from the names, node for node, ties and all (an alias is held
    by no node and counts nowhere; its module's node names it).

    The walk is pre-order, so a module's subtree is a span of modules (``k`` up to the first module after it that is
    not below it, its *end*) and its records a span of records (``starts[k]`` up to its end's start): a subtree's
    figures are the running totals of the records (:func:`_tally`, counted once per report) at the two ends,
    subtracted. A module gets a node where its span holds a record; a module at the cut stands for its whole span,
    which the build steps over. The root is made at once (its figures are every record's), the nodes below it when
    they are first read, all in one pass: a report whose tree is not drawn makes one node, a view cut at three
    levels the nodes it shows."""

    __slots__ = ("aliases", "depth", "inventory", "known", "natural", "placed", "reordered", "running")

    def __init__(self, inventory: Inventory, counted: tuple[list[tuple[int, ...]], set[int],
                 list[tuple[str, tuple[str, str]]]], known: bool, depth: int | None, natural: bool) -> None:
        # not the report: the report keeps the tree, and a tree that kept the report would make it a cycle, freed only
        # by a collection (a program making reports one after another would wait on the collector for each)
        self.inventory, self.known, self.depth, self.natural = inventory, known, depth, natural
        # the running totals, the ids of the aliases (held by no node) and where each alias is named (a tie group
        # counts once, under its canonical name: Report._alias_places)
        self.running, self.aliases, self.placed = counted
        self.reordered = False  # whether the build put numbered siblings in an order the walk did not

    def root(self) -> ModuleNode:
        inventory, walk = self.inventory, self.inventory.walk
        root = _new(_WalkNode)
        root.path, root.type = walk.paths[0], inventory.module_types.get(walk.paths[0])  # type: ignore[union-attr]
        # every record's figures (the running totals' last)
        parameters, frozen, buffers, other_bytes, parameter_bytes, _ = self.running[-1]
        root.parameters, root.trainable, root.buffers = parameters, parameters - frozen, buffers
        root.bytes = parameter_bytes + other_bytes
        if not self.known:
            root.trainable = None
        starts = walk.starts  # type: ignore[union-attr]
        root._held, root._rows = self._held(0, (inventory.tensors, starts))
        root.aliases = _NONE
        if not starts[-1] or (self.depth is not None and self.depth <= 0):
            root.children = _NONE
        _name_aliases(self.placed, {root.path: root})  # its own now (drawn before its children), the others' later
        root._of = self
        return root

    def _held(self, k: int, rows: tuple[list[TensorRecord], list[int]]) -> tuple[Any, Any]:
        """(_held, _rows) of module ``k``'s node: its records, read as a list only if asked (ModuleNode.tensors),
        less any alias (listed now: a tie's few modules)."""
        records, starts = rows
        if starts[k] == starts[k + 1]:
            return _NONE, None
        if self.aliases:
            held = [r for r in records[starts[k]:starts[k + 1]] if id(r) not in self.aliases]
            if len(held) < starts[k + 1] - starts[k]:
                return held or _NONE, None
        return k, rows

    def build(self, root: ModuleNode) -> list[ModuleNode]:
        """Every node below ``root`` down to the depth shown, in one pass over the walk's modules (children of a
        node in the walk's order, then put in natural order as :meth:`Report._sum_up` puts a built tree's)."""
        root.children = _NONE  # until a child is made (the build reads it: never through __getattr__ again)
        with paused_gc():
            return self._build(root)

    def _build(self, root: ModuleNode) -> list[ModuleNode]:
        inventory = self.inventory
        paths, parents, starts = inventory.walk  # type: ignore[misc]
        types = list(inventory.module_types.values())  # the walk's: one per path, in its order
        running = self.running
        rows = (inventory.tensors, starts)  # what each node's _held (its module's index) reads, once asked
        known = self.known
        aliases = self.aliases
        n = len(paths)
        ends = _span_ends(parents)
        made: list[Any] = [None] * n  # module -> its node
        made[0] = root
        given = []  # nodes given a child, in the order they were made (parents before their children)
        new = _new
        if self.depth is None:  # every module whose span holds a record, found in C
            spans = compress(range(1, n), map(lt, map(starts.__getitem__, range(1, n)),
                                              map(starts.__getitem__, islice(ends, 1, None))))
        else:
            spans = self._cut(ends, self.depth)
        for k in spans:
            parent = made[parents[k]]
            node = made[k] = new(ModuleNode)
            node.path, node.type = paths[k], types[k]
            first, last = running[starts[k]], running[starts[ends[k]]]
            node.parameters = parameters = last[0] - first[0]
            node.buffers, node.bytes = last[2] - first[2], last[3] - first[3] + last[4] - first[4]
            node.trainable = parameters - (last[1] - first[1]) if known else None
            if starts[k] == starts[k + 1]:
                node._held, node._rows = _NONE, None
            elif aliases:
                node._held, node._rows = self._held(k, rows)
            else:  # records of its own, read as a list only if asked (ModuleNode.tensors)
                node._held, node._rows = k, rows
            node.aliases = node.children = _NONE
            if parent.children:
                parent.children.append(node)
            else:
                parent.children = [node]
                given.append(parent)
        if self.placed:
            _name_aliases(self.placed, {node.path: node for node in islice(made, 1, None) if node is not None})
        if self.natural:
            for parent in given:
                if len(parent.children) > 1 and natural_order(parent.children):
                    self.reordered = True
        return root.children

    def _cut(self, ends: list[int], depth: int) -> list[int]:
        """The modules down to ``depth`` levels whose spans hold a record, in the walk's order; a module at
        ``depth`` stands for its span, which is stepped over."""
        parents, starts = self.inventory.walk.parents, self.inventory.walk.starts  # type: ignore[union-attr]
        depths = [0] * len(parents)
        shown = []
        k = 1
        while k < len(parents):
            end = ends[k]
            if starts[k] == starts[end]:  # nothing held in its span: no node, nor any below it
                k = end
                continue
            shown.append(k)
            level = depths[k] = depths[parents[k]] + 1
            k = end if level >= depth else k + 1
        return shown


def _name_aliases(placed: list[tuple[str, tuple[str, str]]], nodes: dict[str, ModuleNode]) -> None:
    """Each alias named at its module's node (``placed``: :meth:`Report._alias_places`; ``nodes``: path -> node; an
    alias whose module has no node, below the cut, is not shown)."""
    for module, pair in placed:
        node = nodes.get(module)
        if node is not None:
            if node.aliases:
                node.aliases.append(pair)
            else:
                node.aliases = [pair]


def _span_ends(parents: list[int]) -> list[int]:
    """Per module of a pre-order walk (``parents``: each one's parent's index), the first module after its subtree
    (a subtree is a span), found children before parents."""
    ends = list(range(1, len(parents) + 1))
    for k in range(len(parents) - 1, 0, -1):
        up = parents[k]
        if ends[k] > ends[up]:
            ends[up] = ends[k]
    return ends


def _tally(records: list[TensorRecord], aliases: set[int], running: bool) -> tuple[
        dict[tuple[int, str, bool | None], list[Any]], int, int, int | None,
        list[tuple[int, int, int, int, int, int]] | None]:
    """One pass over the records for the rules of the module docstring (each tie group once: ``aliases`` are the ids
    of the records counted under another name):

    * the counted records grouped by (role, dtype, trainable), in first-seen order: (id of the role, dtype,
      trainable) -> [role, logical elements, bytes of the known sizes, whether a size was unknown]. Every headline
      figure and every dtype's row is a sum over these few groups (:attr:`Report._totals`). Records come in runs of
      one role, dtype and trainability (a module's weight and bias, block after block): a run's sums are kept in
      locals and added to its group when it ends, the group looked up once per run, not once per record;
    * the logical less stored elements of the packed parameters;
    * the stored copies among the aliases (:data:`paramscope.ties.STORED_COPY`: a GGUF head llama.cpp writes twice,
      a head a config ties that the file keeps apart): their stored elements and bytes, which the file holds a
      second time, so they count in ``stored_elements`` and ``bytes``, never in ``total``;
    * with ``running``, the tree's counting rule (:meth:`Report._build_tree`) as running totals: (parameters,
      parameters not trainable, buffers, bytes of what is not a parameter (buffers, quantization bookkeeping, stored
      copies), parameter bytes, records skipped (aliases, uninitialized, not parameters)) of the records before
      each index, and of them all at the end, so that a span's figures (a live walk's module or subtree,
      :class:`_WalkTree`; its trainable parameters, its bytes, its parameter records) are subtractions; else
      None.
    """
    parameter, buffer, quant_aux = Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX
    if aliases:
        from paramscope.ties import is_stored_copy
    groups: dict[tuple[int, str, bool | None], list[Any]] = {}
    role: Any = _NONE  # the current run's role, dtype and trainability: no record has these
    dtype: Any = _NONE
    trained: Any = _NONE
    group: list[Any] = [None, 0, 0, False]  # the current run's group (at first, a dummy)
    numels = sizes = 0  # the current run's sums
    unknown = False  # whether a size in the current run was unknown (a dtype paramscope cannot size)
    unpacked = copies = 0
    copy_bytes: int | None = 0
    # the running totals' figures so far. Kept as figures that stay the same from record to record in a common model
    # (the frozen parameters, the bytes of what is not a parameter, the records skipped), so that the tuple made per
    # record mostly shares its numbers with the one before: a Python int is a new object each time it changes
    parameters = frozen = buffers = other_bytes = parameter_bytes = skipped = 0
    totals: list[tuple[int, int, int, int, int, int]] | None = None
    if running:
        totals = [(0, 0, 0, 0, 0, 0)]
        add = totals.append
    for record in records:
        if aliases and id(record) in aliases:
            skipped += 1
            if record.role is parameter and record.shape is not None and is_stored_copy(record):
                copies += record.stored_numel
                nbytes = record.nbytes
                copy_bytes = None if nbytes is None or copy_bytes is None else copy_bytes + nbytes
                other_bytes += nbytes or 0
        elif record.shape is not None:
            if record.role is not role or record.dtype is not dtype or record.trainable is not trained:
                group[1] += numels
                group[2] += sizes
                group[3] = group[3] or unknown
                numels = sizes = 0
                unknown = False
                role, dtype, trained = record.role, record.dtype, record.trainable
                key = (id(role), dtype, trained)  # a role's id: an enum's hash is a Python call
                group = groups.get(key)  # type: ignore[assignment]
                if group is None:
                    group = groups[key] = [role, 0, 0, False]
            numel = record._numel  # the properties' values where they are known (a reader or the walk set them)
            if numel is None:
                numel = record.numel
            nbytes = record._nbytes
            if nbytes is False:
                nbytes = record.nbytes
            numels += numel
            if nbytes is None:
                unknown = True
            else:
                sizes += nbytes
            if role is parameter:
                if record.quant is not None:
                    unpacked += numel - record.stored_numel
                if running:
                    parameters += numel
                    if trained is not True:
                        frozen += numel
                    parameter_bytes += nbytes or 0
            elif running:
                skipped += 1
                if role is buffer:
                    buffers += numel
                    other_bytes += nbytes or 0
                elif role is quant_aux:
                    other_bytes += nbytes or 0
        else:
            skipped += 1
        if running:
            add((parameters, frozen, buffers, other_bytes, parameter_bytes, skipped))
    group[1] += numels
    group[2] += sizes
    group[3] = group[3] or unknown
    return groups, unpacked, copies, copy_bytes, totals


_NUMBER = r"[0-9]+"


@functools.cache
def _numbers() -> re.Pattern[str]:
    return re.compile(_NUMBER)


@functools.cache
def _leading_zero() -> re.Pattern[str]:
    """A number of two digits or more written with a leading zero, in names joined by NUL."""
    return re.compile("(?:^|\0)0[0-9]")


def _number_key(digits: str) -> tuple[int, str]:
    """A run of ASCII digits ordered as the number it spells, without making the number (a name may hold
    thousands of digits, more than ``int()`` reads): fewer significant digits first, then as text."""
    significant = digits.lstrip("0")
    return len(significant), significant


def natural_order(children: list[ModuleNode]) -> bool:
    """Put siblings whose names differ only in their numbers in numeric order, in place: ``layers.2`` before
    ``layers.10`` and ``conv2`` before ``conv10``, whatever order the source listed them in (a safetensors header
    is sorted as text: 0, 1, 10, 11, 2). Such siblings keep the places they held among the others, and every
    other sibling keeps the source's order (a live module's children are in the order its class defines them).

    The cheap case first: all names numbers (a ``ModuleList``), already ascending (a live model) or not. Returns
    whether anything moved."""
    if len(children) == 2:  # a block of two numbered modules (a live Sequential's Linear and norm) ends here
        first, second = children[0].path, children[1].path
        if (first == "0" or first.endswith(".0")) and (second == "1" or second.endswith(".1")):
            return False
    names = [child.path.rpartition(".")[2] for child in children]
    if names[0] == "0" and names == list(map(str, range(len(names)))):
        return False  # "0", "1", "2", ...: a ModuleList or Sequential in order (a live model's common case), in C
    joined = "\0".join(names)  # one C call each decides the common cases: no number at all, or all numbers
    if joined.isascii() and joined.replace("\0", "").isdigit() and all(names):
        if _leading_zero().search(joined) is None and names == sorted(sorted(names), key=len):
            return False  # no "07": numeric order is by length, then as text, found in C (a live ModuleList's)
        keys = list(map(_number_key, names))
        if any(a >= b for a, b in pairwise(keys)):
            order = sorted(range(len(children)), key=keys.__getitem__)
            children[:] = [children[i] for i in order]
            return True
        return False
    numbered = _numbers()
    if numbered.search(joined) is None:
        return False
    groups: dict[str, list[int]] = {}  # a name with its numbers blanked -> the places of the names like it
    for place, name in enumerate(names):
        blanked = numbered.sub("#", name)
        if blanked != name:
            groups.setdefault(blanked, []).append(place)
    moved_any = False
    for places in groups.values():
        if len(places) < 2:
            continue
        keys = [tuple(map(_number_key, numbered.findall(names[i]))) for i in places]
        if all(a < b for a, b in pairwise(keys)):
            continue
        ranked = sorted(range(len(places)), key=keys.__getitem__)
        moved = [children[places[r]] for r in ranked]
        for place, child in zip(places, moved, strict=True):
            children[place] = child
        moved_any = True
    return moved_any


ModuleColumns = namedtuple("ModuleColumns", "paths depths parameters trainable buffers bytes")
ModuleColumns.__doc__ = """Every module as columns, depth first (:meth:`Report.module_columns`): path, depth,
parameters, buffers and bytes of its subtree, one entry per module; ``trainable`` one value for all (a report over
columns knows no trainability: 0 where there is no parameter, else None)."""
TypeTotal = namedtuple("TypeTotal", "type modules parameters bytes")
TypeTotal.__doc__ = "Parameters held by modules of one class: how many modules, parameters and bytes."
DTypeTotal = namedtuple("DTypeTotal", "dtype parameters buffers bytes")
DTypeTotal.__doc__ = "Parameter and buffer elements stored in one dtype, and their bytes."


def module_parameters(
    records: dict[str, TensorRecord], groups: Iterable[list[str]], other: dict[str, TensorRecord], depth: int
) -> dict[str, int]:
    """Parameters per module path (root ''), down to ``depth`` levels: the per-module rule ``paramscope diff``
    compares. ``records`` maps (normalised) names to records, ``groups`` lists the names of each tie group;
    each group counts once, under a name ``other`` also has if there is one, else its first."""
    counts: dict[str, int] = {"": 0}
    for names in groups:
        record = records[names[0]]
        if record.role is not Role.PARAMETER or not record.initialized:
            continue
        name = next((n for n in names if n in other), names[0])
        parts = name.split(".")[:-1]
        counts[""] += record.numel
        for level in range(1, min(len(parts), depth) + 1):
            path = ".".join(parts[:level])
            counts[path] = counts.get(path, 0) + record.numel
    return counts


def _hangs(parents: list[int], last: int, up: int) -> bool:
    """Whether module ``up`` is the module at ``last`` or one of its ancestors (parents before children)."""
    while last > up:
        last = parents[last]
    return last == up


def _one_by_one(runs: list[str], source: str) -> tuple[list[str], list[int], list[int], list[int], bool, bool]:
    """:meth:`Report.module_columns`' modules, one run at a time: (paths, parents, depths, each run's place, whether
    a place takes several runs, whether depth first)."""
    # The modules, each made after its parent (missing ancestors made on the way) at the next place: index maps
    # a path to its place; a module listed again (or made before as an ancestor) adds to its place's sums. The
    # loop places modules only; each run's place is kept, and the sums are put at their places by C loops after
    index = {"": 0}
    parents, depths, places = [-1], [0], []
    get, setdefault = index.get, index.setdefault
    add_parent, add_depth, add_place = parents.append, depths.append, places.append
    text = 0  # characters of the ancestors made on the way, against MAX_TREE_TEXT (the rest are checked below)
    last, last_parent = 0, None  # the module made last, and its parent's path
    ordered = True  # each module made hangs off the path to the one made before it (depth first)
    again = False  # some module's place was made before its run (listed apart, or made as an ancestor)
    for module, parent in zip(runs, [m.rpartition(".")[0] for m in runs], strict=True):
        if parent == last_parent:  # the last one's sibling (a header lists them together)
            up = parents[last]
        else:
            up = get(parent)
            if up is None:  # its parent is new too: made first, with any other missing ancestors
                missing = [parent]
                above = parent.rpartition(".")[0]
                while above not in index:
                    missing.append(above)
                    above = above.rpartition(".")[0]
                up = index[above]
                if up != last and up != parents[last] and up != parents[parents[last]]:  # not 1 or 2 up
                    ordered = ordered and _hangs(parents, last, up)
                for path in reversed(missing):
                    text += len(path)
                    if text > MAX_TREE_TEXT:
                        raise ParamscopeError(source, _TREE_TEXT_REASON)
                    last = index[path] = len(parents)
                    add_parent(up)
                    add_depth(depths[up] + 1)
                    up = last
        place = len(parents)
        at = setdefault(module, place)
        if at != place:  # made before: its sums grow
            add_place(at)
            again = True
            continue
        if up != last and up != parents[last] and up != parents[parents[last]]:  # not its child, sibling or
            ordered = ordered and _hangs(parents, last, up)  # parent's sibling: further up?
        last, last_parent = place, parent
        add_parent(up)
        add_depth(depths[up] + 1)
        add_place(place)
    return list(index), parents, depths, places, again, ordered


def _by_siblings(runs: list[str], stretches: list[tuple[int, int, int, int]] | None = None,
                 sums: list[tuple[list[int], list[int]]] | None = None,
                 ) -> tuple[list[str], list[int], list[int], list[int], bool, bool] | None:
    """:func:`_one_by_one`'s modules, made a group of sibling runs at a time (a header lists a module's children
    together: DeepSeek-V3's 46,000 runs are 15,000 groups, an expert's three projections each), and a stretch of
    groups whose parents are new siblings at a time (a layer's 256 experts: :func:`_stretch`). Only the groups'
    parents and the ancestors made are looked up; the runs are added to the columns in bulk. None (and
    :func:`_one_by_one` decides) where a run's module was made before (listed apart, made as an ancestor before
    its own tensors come, or the parent of a later run), or where the ancestors' paths reach :data:`MAX_TREE_TEXT`.
    So every run's module is a leaf. ``stretches``, if given, gets (first place, parents, runs each, their parent's
    place) of each stretch placed at once. ``sums``, if given, pairs each run's sums (one list per figure, a value
    per run) with a list holding the root's 0: each is filled with every module's own sums, place by place, as the
    paths are (a run's module takes its run's, a module made without tensors of its own 0), and no places are
    listed (the list returned is empty): every run's module is a place of its own, so its sums are its run's, laid
    out by the same slices as the paths, not put at their places by a look-up per run after."""
    from itertools import chain, compress
    from operator import ne, sub

    up_paths = [run.rpartition(".")[0] for run in runs]
    # group g is runs[starts[g]:starts[g + 1]], one parent's children listed together
    starts = list(compress(range(len(runs) + 1), [*map(ne, up_paths, [None, *up_paths[:-1]]), True]))
    groups = len(starts) - 1
    group_parents = list(map(up_paths.__getitem__, starts[:-1]))
    del up_paths
    # the groups whose parents share their parent (a layer's experts), stretch by stretch: each group's stretch end
    above_parents = [parent.rpartition(".")[0] for parent in group_parents]
    edges = list(compress(range(groups + 1), [*map(ne, above_parents, [None, *above_parents[:-1]]), True]))
    stretch_ends = list(chain.from_iterable(map(repeat, edges[1:], map(sub, edges[1:], edges))))
    made = {"": 0}  # path -> place of each module made without tensors of its own
    get = made.get
    columns = paths, parents, depths, places = [""], [-1], [0], []
    text = 0  # characters of the ancestors made, against MAX_TREE_TEXT
    ordered = True
    single_until = 0  # a stretch found not to be new siblings goes group by group
    g = 0
    while g < groups:
        start, end = starts[g], starts[g + 1]
        parent = group_parents[g]
        last = len(paths) - 1
        up = get(parent)
        if up is None:  # made first, with any other missing ancestors
            up = get(above_parents[g])
            if up is not None and stretch_ends[g] - g > 1 and g >= single_until:  # new siblings in a stretch?
                # group g's parent is new and its own parent made: so are the stretch's others' where none was
                # made before and none twice, and the groups of one size (a layer's experts) go in one step
                stretch_end = stretch_ends[g]
                sizes = set(map(sub, starts[g + 1:stretch_end + 1], starts[g:stretch_end]))
                stretch = group_parents[g:stretch_end]
                if len(sizes) == 1 and made.keys().isdisjoint(stretch) and len(set(stretch)) == len(stretch):
                    if up != last and up != parents[last] and up != parents[parents[last]]:
                        ordered = ordered and _hangs(parents, last, up)
                    text += sum(map(len, stretch))
                    if text > MAX_TREE_TEXT:
                        return None
                    size = sizes.pop()
                    if stretches is not None:
                        stretches.append((len(paths), len(stretch), size, up))
                    _stretch(columns, made, runs, stretch, start, size, up, sums)
                    g = stretch_end
                    continue
                single_until = stretch_end
            if up is None:  # more than one missing
                above = above_parents[g]
                missing = [parent, above]
                above = above.rpartition(".")[0]
                while above not in made:
                    missing.append(above)
                    above = above.rpartition(".")[0]
                up = made[above]
            else:  # one: an expert of an expert list, a layer of a layer list
                missing = [parent]
            if up != last and up != parents[last] and up != parents[parents[last]]:
                ordered = ordered and _hangs(parents, last, up)
            for path in reversed(missing):
                text += len(path)
                if text > MAX_TREE_TEXT:
                    return None
                made[path] = place = len(paths)
                paths.append(path)
                parents.append(up)
                depths.append(depths[up] + 1)
                up = place
            if sums is not None:
                for _, own in sums:
                    own += [0] * len(missing)
        elif up != last and up != parents[last] and up != parents[parents[last]]:
            ordered = ordered and _hangs(parents, last, up)
        count = end - start
        place = len(paths)
        paths += runs[start:end]
        parents += [up] * count
        depths += [depths[up] + 1] * count
        if sums is None:
            places += range(place, place + count)
        else:
            for per_run, own in sums:
                own += per_run[start:end]
        g += 1
    if len(set(paths)) != len(paths):  # a module made twice: the runs one by one add the second to the first
        return None
    return paths, parents, depths, places, False, ordered


def _stretches_summed(parents: list[int], columns: list[list[int]], stretches: list[tuple[int, int, int, int]],
                      ) -> list[int] | None:
    """The stretches of :func:`_stretch` summed up by C loops, in place in ``columns`` (each module's own sums,
    depth first): each stretch parent takes its runs' sums (leaves: :func:`_by_siblings`), and their common parent
    the parents'. Returns the other places, bottom-up, for the loop of :meth:`Report._summed` to add up; None (and
    nothing changed) where a module outside a stretch hangs off a stretch's parent (a module listed apart), or a
    stretch's parent is one (a stretch inside a stretch): the loop then adds up every module."""
    from itertools import chain

    heads: set[int] = set()
    for base, count, size, _ in stretches:
        heads.update(range(base, base + count * (size + 1), size + 1))
    bounds = [0, *chain.from_iterable((base, base + count * (size + 1)) for base, count, size, _ in stretches),
              len(parents)]
    # the places between the stretches (each gap bounds[k]:bounds[k + 1], k even; the root, place 0, left out),
    # last first and each backwards
    rest = list(chain.from_iterable(range(bounds[k + 1] - 1, bounds[k] - 1 if k else 0, -1)
                                    for k in range(len(bounds) - 2, -1, -2)))
    if not heads.isdisjoint(map(parents.__getitem__, rest)) or not heads.isdisjoint(up for *_, up in stretches):
        return None
    from operator import add

    for base, count, size, up in stretches:
        width = size + 1
        end = base + count * width
        for column in columns:
            sums = column[base:end:width]  # each parent's own (none: a parent made for its runs)
            for j in range(1, width):
                sums = list(map(add, sums, column[base + j:end:width]))
            column[base:end:width] = sums
            column[up] += sum(sums)
    return rest


def _stretch(columns: tuple[list[str], list[int], list[int], list[int]], made: dict[str, int], runs: list[str],
             stretch: list[str], start: int, size: int, up: int,
             sums: list[tuple[list[int], list[int]]] | None = None) -> None:
    """:func:`_by_siblings`' columns for a stretch of groups of ``size`` runs each, from ``runs[start]`` on, whose
    parents (``stretch``) are new siblings, children of the module at place ``up``: each parent made, then its
    group's runs, as group by group, but by C loops over the whole stretch (row k of the stretch is parent k and
    its runs, ``size + 1`` places). ``sums``: as :func:`_by_siblings` takes them, laid out as the paths are (each
    parent's own 0)."""
    from itertools import chain, compress

    paths, parents, depths, places = columns
    count = len(stretch)
    base = len(paths)
    end = start + count * size
    paths += chain.from_iterable(zip(stretch, *[runs[start + j:end:size] for j in range(size)], strict=True))
    placed = range(base, base + count * (size + 1), size + 1)  # each parent's place
    made.update(zip(stretch, placed, strict=True))
    parents += chain.from_iterable(zip(repeat(up, count), *[placed] * size, strict=True))
    depth = depths[up] + 1
    depths += [depth, *[depth + 1] * size] * count
    if sums is None:
        places += compress(range(base, base + count * (size + 1)), [False, *[True] * size] * count)
        return
    for per_run, own in sums:
        own += chain.from_iterable(zip(repeat(0, count), *[per_run[start + j:end:size] for j in range(size)],
                                       strict=True))


class Report:
    """Every figure about one model, computed from its records by the rules in this module's docstring."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._trees: dict[tuple[int | None, bool], ModuleNode] = {}
        self._natural = True  # whether the tree being built puts siblings in natural order (tree(natural=))
        self._reordered = False  # whether a tree built put numbered siblings in an order the source did not
        self._table: Table | None = None
        if inventory.columnar:
            table = inventory.table
            check_names(inventory.source, table.names)
            simple = table.sparse.keys() <= _COLUMN_SPARSE and not table.uninitialized
            if simple and table.fact("distinct"):
                # Columns with no tie, no name twice and nothing sparse but packing: every figure is counted over
                # the columns, and records are made only for what is drawn (the common file)
                self._table = table
                self._aliased: dict[Hashable, list[TensorRecord]] = {}
                return
        tensors = inventory.tensors
        if inventory.columnar:  # the names checked above
            names = inventory.table.names
        else:  # listed once for both uses (a list comprehension reads a slot faster than map(attrgetter))
            names = [r.name for r in tensors]
            check_names(inventory.source, names)
        count = len(tensors)
        # (both tests in C: a set of the names, the ties' None counted)
        unique_names = len(set(names)) == count
        ties = [r.tie for r in tensors]
        untied = ties.count(None)
        if unique_names and untied == count:
            # No tie and no name twice: every record is its own group (the common case for files, and
            # cheaper than a dict of a million tie keys)
            self._heads = tensors
            self._aliased = {}
            return
        aliases: dict[Hashable, list[TensorRecord]] = {}
        with paused_gc():
            if unique_names and not any(isinstance(k, tuple) and k[:1] == ("name",) for k in ties if k is not None):
                # A few tied records among unique names (a tied head): a record without a tie is its own group
                # (its key, ("name", its name), is no other record's: no tie key has that form), so only the tied
                # ones are looked up, not a tie key made and hashed for every record
                first: dict[Hashable, TensorRecord] = {}
                group_heads: list[TensorRecord] = []
                keep = group_heads.append
                for record, key in zip(tensors, ties, strict=True):
                    if key is None:
                        keep(record)
                    elif key in first:
                        aliases.setdefault(key, [first[key]]).append(record)
                    else:
                        first[key] = record
                        keep(record)
                self._heads = group_heads
            else:
                heads: dict[Hashable, TensorRecord] = {}
                for record in tensors:
                    key = record.tie_key
                    if key in heads:
                        aliases.setdefault(key, [heads[key]]).append(record)
                    else:
                        heads[key] = record
                self._heads = list(heads.values())
        self._aliased = aliases

    # ---- what the source said -------------------------------------------------------------
    @property
    def columns(self) -> Table | None:
        """The inventory's table when this report counts over it (no tie, no name twice, nothing sparse or
        uninitialized: a renderer may then write rows straight from the columns), else None."""
        return self._table

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

    @property
    def architecture(self) -> Any:
        """The architecture card (:class:`paramscope.architecture.Architecture`) the source states, or None."""
        return self.inventory.architecture

    # ---- counting -------------------------------------------------------------------------
    @cached_property
    def _heads(self) -> list[TensorRecord]:
        """One record per tie group; for a report counted over columns (no ties), every record, made on use."""
        return self.inventory.tensors

    @cached_property
    def row_kinds(self) -> list[int]:
        """A report over columns: each entry's kind, the number of the first entry of the same shape, dtype, role and
        packing (its :class:`QuantInfo` by identity: the rules share one among equal packings): what an entry's
        counts and its JSON line after the name follow from. Found in C, one dict look-up per entry (setdefault
        keeps the first)."""
        from itertools import count

        table = self._table
        assert table is not None
        packing = table.sparse.get("quant", {})
        shapes, dtypes, roles = table.shapes, table.dtypes, table.roles
        keys: Any
        if dtypes and not packing and dtypes.count(dtypes[0]) == len(dtypes) and len(table.role_set()) == 1:
            keys = shapes  # one dtype and one role (the common file): the shape alone decides
        elif not packing:
            keys = zip(shapes, dtypes, roles, strict=True)  # a Role hashes as its str, in C
        else:  # and packing by identity, set in C
            from collections import deque

            packed: list[int | None] = [None] * len(shapes)
            deque(map(packed.__setitem__, packing.keys(), map(id, packing.values())), maxlen=0)
            keys = zip(shapes, dtypes, roles, packed, strict=True)
        first: dict[Any, int] = {}
        return list(map(first.setdefault, keys, count()))

    @cached_property
    def kind_counts(self) -> dict[int, int]:
        """A report over columns: how many entries are of each kind (:attr:`row_kinds`), kinds in first-seen order;
        counted in C."""
        from collections import Counter

        return Counter(self.row_kinds)

    @cached_property
    def _groups(self) -> list[tuple[str, tuple[int, ...], Role, int, int | None, int]]:
        """A report over columns: (dtype, shape, role, elements, bytes, how many tensors) for each distinct
        (dtype, shape, role), in first-seen order, counted in C (``Counter`` over the zipped columns); where each
        entry's kind was found already (:attr:`row_kinds`, which the JSON lines need), the kinds are counted and
        those that differ only in packing summed. Sized once per group."""
        from paramscope import dtypes

        table = self._table
        assert table is not None
        shapes, kinds, roles = table.shapes, table.dtypes, table.roles
        counts: dict[tuple[str, tuple[int, ...], Role], int]
        if "row_kinds" in self.__dict__:
            counts = {}
            for first, count in self.kind_counts.items():
                key = (kinds[first], shapes[first], roles[first])  # type: ignore[index]
                counts[key] = counts.get(key, 0) + count
        else:
            from collections import Counter

            counts = Counter(zip(kinds, shapes, roles, strict=True))  # type: ignore[arg-type]  # Role hashes in C
        out = []
        for (dtype, shape, role), count in counts.items():
            numel = 1
            for dim in shape:
                numel *= dim
            out.append((dtype, shape, role, numel, dtypes.nbytes(dtype, numel), count))
        return out

    @cached_property
    def _packed(self) -> list[tuple[str, Role, int]]:
        """A report over columns: (dtype, role, logical less stored elements) of packed entries, the correction
        :attr:`_groups` (which size entries by their stored shape) needs; entries that need none left out. Where
        each entry's kind was found already (:attr:`row_kinds`, which the JSON lines need), one tuple per packed
        kind, its correction times its count: the entries of a kind share their shape and their packing, and a
        packed entry's logical elements are its packing's (:class:`paramscope.records.Table`), so they share
        their correction too (DeepSeek-V3: 45,800 FP8 weights of a dozen kinds, none corrected)."""
        table = self._table
        assert table is not None
        out = []
        shapes, dtypes, roles, numel = table.shapes, table.dtypes, table.roles, table.numel
        packing = table.sparse.get("quant", {})
        if "row_kinds" in self.__dict__:
            for first, count in self.kind_counts.items():
                if first in packing:
                    stored = 1
                    for dim in shapes[first]:  # type: ignore[union-attr]
                        stored *= dim
                    if numel[first] != stored:
                        out.append((dtypes[first], roles[first], (numel[first] - stored) * count))
            return out
        for index in packing:
            stored = 1
            for dim in shapes[index]:  # type: ignore[union-attr]
                stored *= dim
            if numel[index] != stored:
                out.append((dtypes[index], roles[index], numel[index] - stored))
        return out

    @cached_property
    def unique(self) -> list[TensorRecord]:
        """One record per tie group (its canonical, first-seen name), uninitialized ones left out."""
        return [r for r in self._heads if r.shape is not None]

    @cached_property
    def canonical_name(self) -> dict[str, str]:
        """Name -> canonical name of its tie group, for every name in a group of two or more."""
        return {r.name: group[0].name for group in self._aliased.values() for r in group}

    @cached_property
    def _size_columns(self) -> tuple[list[TensorRecord], list[int], list[int | None]]:
        """The unique initialized records, their logical elements and stored bytes (:func:`sized`), computed once."""
        return sized(self._heads)

    @property
    def _sizes(self) -> Iterable[tuple[TensorRecord, int, int | None]]:
        """(record, logical elements, stored bytes) for each unique initialized record: :attr:`_size_columns`
        zipped, each pass made anew (no tuple per record is kept)."""
        return zip(*self._size_columns, strict=True)

    @cached_property
    def _totals(self) -> dict[str, Any]:
        """Every headline figure, and the rows of :attr:`by_dtype` (``"dtypes"``: dtype -> [parameters, buffers,
        bytes]), from the unique records grouped by (role, dtype, trainable) (or from the groups of a table's
        columns)."""
        if self._table is not None:
            return self._table_totals()
        groups, unpacked, copies, copy_bytes, _ = self._tallied
        total = trainable = frozen = buffers = 0
        parameter_bytes: int | None = 0
        buffer_bytes: int | None = 0
        aux_bytes: int | None = 0
        known = True
        other: dict[str, int] = {}
        rows: dict[str, list[int]] = {}  # dtype -> [parameters, buffers, bytes]
        for (_, dtype, trained), (role, numel, size, unknown) in groups.items():
            if role is Role.PARAMETER:
                total += numel
                if trained is True:
                    trainable += numel
                elif trained is False:
                    frozen += numel
                else:
                    known = False
                parameter_bytes = None if unknown or parameter_bytes is None else parameter_bytes + size
            elif role is Role.BUFFER:
                buffers += numel
                buffer_bytes = None if unknown or buffer_bytes is None else buffer_bytes + size
            else:
                other[role.value] = other.get(role.value, 0) + numel
                if role is Role.QUANT_AUX:
                    aux_bytes = None if unknown or aux_bytes is None else aux_bytes + size
                continue
            row = rows.get(dtype)
            if row is None:
                row = rows[dtype] = [0, 0, 0]
            row[0 if role is Role.PARAMETER else 1] += numel
            row[2] += size  # the known sizes: a dtype of unknown size adds none
        if copy_bytes is None:
            parameter_bytes = None
        elif parameter_bytes is not None:
            parameter_bytes += copy_bytes
        return {
            "total": total,
            "trainable": trainable if known else None,
            "frozen": frozen if known else None,
            "buffers": buffers,
            "other": other,
            "parameter_bytes": parameter_bytes,
            "buffer_bytes": buffer_bytes,
            "aux_bytes": aux_bytes,
            "known": known,
            "stored_elements": total - unpacked + copies,
            "dtypes": rows,
        }

    @cached_property
    def _tallied(self) -> tuple[dict[tuple[int, str, bool | None], list[Any]], int, int, int | None,
                                list[tuple[int, int, int, int, int, int]] | None]:
        """:func:`_tally` of every record: the groups every headline figure is summed from, and, for a live walk's
        tree (:attr:`_walk_countable`), the running totals in the same pass."""
        return _tally(self.inventory.tensors, self._alias_ids, self._walk_countable)

    @cached_property
    def _alias_ids(self) -> set[int]:
        """The ids of the records a tie group counts under another name (each group's records after its first)."""
        return {id(r) for group in self._aliased.values() for r in group[1:]}

    def _table_totals(self) -> dict[str, Any]:
        """:attr:`_totals` from the column groups: no tie and no trainability is known there (a table with
        either is counted record by record), so the rules reduce to sums per role, packed entries' logical
        elements added (:attr:`_packed`)."""
        total = buffers = 0
        parameter_bytes: int | None = 0
        buffer_bytes: int | None = 0
        aux_bytes: int | None = 0
        other: dict[str, int] = {}
        for _, _, role, numel, size, count in self._groups:
            n = numel * count
            if role is Role.PARAMETER:
                total += n
                parameter_bytes = None if size is None or parameter_bytes is None else parameter_bytes + size * count
            elif role is Role.BUFFER:
                buffers += n
                buffer_bytes = None if size is None or buffer_bytes is None else buffer_bytes + size * count
            else:
                other[role.value] = other.get(role.value, 0) + n
                if role is Role.QUANT_AUX:
                    aux_bytes = None if size is None or aux_bytes is None else aux_bytes + size * count
        unpacked = 0
        for _, role, extra in self._packed:
            if role is Role.PARAMETER:
                total += extra
                unpacked += extra
            elif role is Role.BUFFER:
                buffers += extra
            else:
                other[role.value] += extra
        known = not any(role is Role.PARAMETER for _, _, role, _, _, _ in self._groups)  # trainability unknown
        return {
            "total": total, "trainable": 0 if known else None, "frozen": 0 if known else None, "buffers": buffers,
            "other": other, "parameter_bytes": parameter_bytes, "buffer_bytes": buffer_bytes, "aux_bytes": aux_bytes,
            "known": known, "stored_elements": total - unpacked,
        }

    @property
    def total(self) -> int:
        """Parameter elements, each tie group once."""
        return self._totals["total"]

    @property
    def _trainability_known(self) -> bool:
        return self._totals["known"]

    @property
    def trainable(self) -> int | None:
        """Parameters with ``requires_grad``; None where the source cannot know."""
        return self._totals["trainable"]

    @property
    def frozen(self) -> int | None:
        """Parameters without ``requires_grad``; None where the source cannot know."""
        return self._totals["frozen"]

    @property
    def buffers(self) -> int:
        """Buffer elements, each tie group once."""
        return self._totals["buffers"]

    @property
    def other(self) -> dict[str, int]:
        """Elements of roles that are neither parameters nor buffers (optimizer state, quant bookkeeping)."""
        return self._totals["other"]

    @property
    def parameter_bytes(self) -> int | None:
        return self._totals["parameter_bytes"]

    @property
    def buffer_bytes(self) -> int | None:
        return self._totals["buffer_bytes"]

    @property
    def quant_aux_bytes(self) -> int | None:
        """Storage of quantization bookkeeping (scales, zero points, ``quant_state``)."""
        return self._totals["aux_bytes"]

    @property
    def bytes(self) -> int | None:
        """Storage of parameters, buffers and quantization bookkeeping, each tie group once; None if a
        dtype is unknown."""
        p, b, q = self.parameter_bytes, self.buffer_bytes, self.quant_aux_bytes
        return None if p is None or b is None or q is None else p + b + q

    @cached_property
    def ties(self) -> list[list[str]]:
        """Tie groups of two or more names, canonical name first."""
        return [[r.name for r in group] for group in self._aliased.values()]

    @cached_property
    def uninitialized(self) -> list[str]:
        """Names of tensors whose shape is not known yet (lazy modules before a dry run)."""
        if self._table is not None:
            return []  # a table with an uninitialized entry is counted record by record
        return [r.name for r in self.tensors if not r.initialized]

    @property
    def _embedding_keys(self) -> set[Hashable]:
        """The tie keys of the embedding weights' groups (:attr:`_embeddings`)."""
        return self._embeddings[0]

    @cached_property
    def _embeddings(self) -> tuple[set[Hashable], list[TensorRecord]]:
        """The tie keys of the embedding weights' groups, and each such group's head (its record in
        :attr:`_heads`), so that counting them is a pass over these few records, not over every record."""
        def is_embedding_class(owner: str) -> bool:
            # the source named the class: nn.Embedding (or a subclass named for it, Gemma's ScaledWordEmbedding),
            # or the table a reader marked (Keras's `embeddings`, vars/0)
            return owner in EMBEDDING_TYPES or owner.endswith(EMBEDDING_CLASS_ENDINGS)

        def is_embedding(r: TensorRecord) -> bool:
            if r.owner_type is not None:
                return is_embedding_class(r.owner_type)
            module, _, leaf = r.name.rpartition(".")
            if leaf != "weight":
                return False
            return _named_like_embedding(module)

        from itertools import compress

        heads = self._heads
        owners = [r.owner_type for r in heads]
        # A live model names every holder's class: the rule is decided once per class (in C, the classes listed
        # once), and the records of an embedding class picked in C, not tested one by one
        classes = dict.fromkeys(owners)
        embedding_classes = {owner for owner in classes if owner is not None and is_embedding_class(owner)}
        found = list(compress(heads, map(embedding_classes.__contains__, owners))) if embedding_classes else []
        if None in classes:
            # Only a weight whose module ends like an embedding's can match: the rule's whole test runs on
            # those alone, not on every weight of a million-tensor checkpoint.
            weights = tuple(word + ".weight" for word in EMBEDDING_WORDS)
            found += [r for r, owner in zip(heads, owners, strict=True)
                      if owner is None and r.name.endswith(weights) and is_embedding(r)]
        keys = {r.tie_key for r in found}
        hits = {id(r): r for r in found}  # id -> head: a head found both ways is one head
        for key, group in self._aliased.items():
            if any(is_embedding(r) for r in group):
                keys.add(key)
                hits[id(group[0])] = group[0]  # a group's first record is its head (Report.__init__)
        return keys, list(hits.values())

    @cached_property
    def embedding(self) -> int:
        """Parameters in embedding weights (tied heads included: they are the same tensors)."""
        table = self._table
        if table is not None:  # no tie and no owner class: a weight counts by its module's name alone
            weights = tuple(word + ".weight" for word in EMBEDDING_WORDS)
            from itertools import compress, repeat

            names, numel = table.names, table.numel
            # the parameters' names only (where some entry is another role: a quantized file's scales), and the
            # cheap test, in C, picks the few candidates
            mask = self._parameter_mask
            rows: Iterable[int] = range(len(names)) if mask is None else list(compress(range(len(names)), mask))
            # A name ending with a word and ".weight" has the word's last character 8 from its end: that one
            # character, looked up in C, keeps the few names that can (str.endswith of the words, each name, cost
            # more than the rest of the count); a name shorter than that, and so every name, is tested in full
            from operator import itemgetter

            named = names if mask is None else map(names.__getitem__, rows)
            try:
                kept = list(compress(rows, map(_EMBEDDING_LAST.__contains__, map(itemgetter(-8), named))))
            except IndexError:
                kept = rows
            ends = map(str.endswith, map(names.__getitem__, kept), repeat(weights))
            return sum(numel[i] for i in compress(kept, ends) if _named_like_embedding(names[i].rpartition(".")[0]))
        # each group once, by its head: the unique records whose tie key is an embedding's (rule in the docstring)
        return sum(r.numel for r in self._embeddings[1] if r.role is Role.PARAMETER and r.shape is not None)

    @cached_property
    def non_embedding(self) -> int:
        """``total`` less embedding weights. The rule: :data:`NON_EMBEDDING_RULE`."""
        return self.total - self.embedding

    @property
    def stored_elements(self) -> int:
        """Parameter elements as stored (packed words, not logical weights), each tie group once."""
        return self._totals["stored_elements"]

    @cached_property
    def _routed(self) -> tuple[int, int, int] | None:
        """(routed-expert parameters, experts, experts per token), or None for a dense model."""
        info = self.metadata.get("moe")
        if not isinstance(info, dict):
            return None
        experts, per_token = info.get("experts"), info.get("experts_per_token")
        if not isinstance(experts, int) or not isinstance(per_token, int) or experts < 1:
            return None
        from paramscope.moe import is_routed

        routed = sum(n for r, n, _ in self._sizes if r.role is Role.PARAMETER and is_routed(r, experts))
        return routed, experts, per_token

    @property
    def active(self) -> int | None:
        """Parameters used per token by a mixture of experts (None for a dense model); rule in the module doc."""
        routed = self._routed
        if routed is None:
            return None
        n, experts, per_token = routed
        return self.total - n + (2 * n * per_token + experts) // (2 * experts)

    @property
    def size_label(self) -> str:
        """``"7B"``, ``"124M"``, ``"8x7B"``: the rule is in the module docstring."""
        routed = self._routed
        if routed is None:
            return size_label(self.total)
        n, experts, _ = routed
        return f"{experts}x{size_label(self.total - n + (2 * n + experts) // (2 * experts))}"

    # ---- groupings ------------------------------------------------------------------------
    @cached_property
    def by_type(self) -> list[TypeTotal]:
        """Parameters per class of the module holding them, largest first."""
        types = self.inventory.module_types
        table = self._table
        if table is not None and not types:  # no class known anywhere: every parameter is "(unknown)"
            # which entries are parameters, and their modules, in C
            mask = self._parameter_mask
            held = set(self._tensor_modules) if mask is None else set(compress(self._tensor_modules, mask))
            if not held:
                return []
            size = self.parameter_bytes
            if size is None:  # an unknown dtype: the others' bytes, as the general rule sums them
                size = sum(s or 0 for s in (compress(table.nbytes, mask) if mask is not None else table.nbytes))
            return [TypeTotal("(unknown)", len(held), self.total, size)]
        if self._walk_countable:
            return self._walk_by_type()
        kinds: dict[str, list[Any]] = {}  # class -> [parameters, bytes, modules]
        parameter = Role.PARAMETER
        last_module: str | None = None  # the module and holder class of the record before
        last_owner: str | None = None
        row: list[Any] = []
        for r, numel, size in self._sizes:
            if r.role is not parameter:
                continue
            module = r.name.rpartition(".")[0]
            owner = r.owner_type
            if module != last_module or owner != last_owner:
                # a new module (or holder class): a live model's records come module by module, so the class
                # is looked up once per module, not once per record
                last_module, last_owner = module, owner
                kind = owner or types.get(module) or "(unknown)"
                row = kinds.get(kind)  # type: ignore[assignment]
                if row is None:
                    row = kinds[kind] = [0, 0, set()]
                row[2].add(module)
            row[0] += numel
            row[1] += size or 0
        rows = [TypeTotal(k, len(held), n, b) for k, (n, b, held) in kinds.items()]
        return sorted(rows, key=lambda t: (-t.parameters, t.type))

    def _walk_by_type(self) -> list[TypeTotal]:
        """:attr:`by_type` of a live walk's report. Its records come in runs held by modules of one class (a block's
        linear layers, then its norms), found in C, and a run's figures are the running totals at its two ends
        (:func:`_tally`); each module's own records are a span (the walk's starts), and a module counts for its class
        where its span holds a parameter record counted there (its tie group's first: an alias counts nowhere)."""
        from collections import Counter
        from operator import itemgetter, sub

        kinds: dict[str, list[int]] = {}  # class -> [parameters, bytes]
        records = self.inventory.tensors
        running = self._tallied[4]
        assert running is not None
        owners = [r.owner_type for r in records]
        ends = [0, *compress(range(1, len(owners)), map(is_not, islice(owners, 1, None), owners)), len(owners)]
        for start, end in pairwise(ends):
            first, last = running[start], running[end]
            if end - start != last[5] - first[5]:  # not every record of the run skipped
                row = kinds.get(owners[start])  # type: ignore[arg-type]
                if row is None:
                    kinds[owners[start]] = [last[0] - first[0], last[4] - first[4]]  # type: ignore[index]
                else:
                    row[0] += last[0] - first[0]
                    row[1] += last[4] - first[4]
        starts = self.inventory.walk.starts  # type: ignore[union-attr]
        # parameter records counted before each module's first: its index less the records skipped before it
        held = list(map(sub, starts, map(itemgetter(5), map(running.__getitem__, starts))))
        modules = Counter(compress(self.inventory.module_types.values(), map(lt, held, islice(held, 1, None))))
        rows = [TypeTotal(k, modules[k], n, b) for k, (n, b) in kinds.items()]
        return sorted(rows, key=lambda t: (-t.parameters, t.type))

    @cached_property
    def by_component(self) -> list[TypeTotal]:
        """Parameters per component (embedding, attention, MLP, experts, router, norm, head, conv, other) of the
        module holding them, largest first: by the module's class where a live model gives one, else inferred
        from names and shapes (:func:`paramscope.components.classify`). Each tie group once."""
        from paramscope.components import classify

        table = self._table
        if table is not None:
            entries = zip(table.names, table.roles, table.numel, table.nbytes, table.shapes, strict=True)
        else:
            entries = ((r.name, r.role, numel, size, r.shape) for r, numel, size in self._sizes)
        parameter = Role.PARAMETER
        held = [(name, numel, size, shape) for name, role, numel, size, shape in entries if role is parameter]
        # a module's weight shape is the hint classify() takes where no name decides
        ndim = {name[:-7]: len(shape) for name, _, _, shape in held if name.endswith(".weight") and shape is not None}
        types = self.inventory.module_types
        # No rule reads a part that is a plain number (the 80 layers, the 256 experts), so a module is classified
        # as its path with those blanked: once per kind of module, not once per module
        blank = functools.partial(re.compile(r"(?:^|(?<=\.))[0-9]+(?=\.|$)").sub, "#")
        known: dict[tuple[str, str], str] = {}
        kinds: dict[tuple[str, str, int | None, str | None], str] = {}
        params: dict[str, int] = {}
        sizes: dict[str, int] = {}
        modules: dict[str, set[str]] = {}
        for name, numel, size, _ in held:
            module, _, leaf = name.rpartition(".")
            key = (module, "" if leaf in ("weight", "bias") else leaf)  # classify() reads other leaves only
            component = known.get(key)
            if component is None:
                kind = (blank(module), key[1], ndim.get(module), types.get(module))
                component = kinds.get(kind)
                if component is None:
                    component = kinds[kind] = classify(module, leaf, kind[2], kind[3])
                known[key] = component
            params[component] = params.get(component, 0) + numel
            sizes[component] = sizes.get(component, 0) + (size or 0)
            modules.setdefault(component, set()).add(module)
        rows = [TypeTotal(k, len(modules[k]), params[k], sizes[k]) for k in params]
        return sorted(rows, key=lambda t: (-t.parameters, t.type))

    @cached_property
    def types_known(self) -> bool:
        """Whether the source named module classes (a live model does, a file never): where not, renderers show
        :attr:`by_component` for "by type", saying it is inferred from names."""
        types = self.inventory.module_types
        if not types:
            return False
        # a reader may name a class or two it is sure of (GGUF's token_embd is an Embedding): that is not a
        # model's classes, so names decide unless every module holding a tensor has its class
        return all(r.module in types for r in self.tensors)

    @cached_property
    def by_dtype(self) -> list[DTypeTotal]:
        """Elements and bytes per stored dtype, largest first."""
        rows: dict[str, list[int]] = {}
        if self._table is not None:
            for dtype, _, role, numel, size, count in self._groups:
                if role is Role.PARAMETER or role is Role.BUFFER:
                    row = rows.setdefault(dtype, [0, 0, 0])
                    row[0 if role is Role.PARAMETER else 1] += numel * count
                    row[2] += (size or 0) * count
            for dtype, role, extra in self._packed:
                if role is Role.PARAMETER or role is Role.BUFFER:
                    rows[dtype][0 if role is Role.PARAMETER else 1] += extra
            totals = [DTypeTotal(d, p, b, n) for d, (p, b, n) in rows.items()]
            return sorted(totals, key=lambda t: (-t.bytes, t.dtype))
        # counted with the headline figures, in their pass (:attr:`_totals`)
        totals = [DTypeTotal(d, p, b, n) for d, (p, b, n) in self._totals["dtypes"].items()]
        return sorted(totals, key=lambda t: (-t.bytes, t.dtype))

    def top(self, k: int) -> list[TensorRecord]:
        """The ``k`` largest tensors (tie groups once), largest first; ties in size keep source order. The records
        shown carry no tie key (a storage pointer, a reader's internal identity): :attr:`ties` names the groups."""
        table = self._table
        if table is not None:  # a stable sort of the indices (reversed sorts keep equal items in order)
            top = [table.row(i) for i in sorted(range(len(table)), key=table.numel.__getitem__, reverse=True)[:k]]
        else:
            top = [r for r, _, _ in sorted(self._sizes, key=lambda item: -item[1])[:k]]
        return [r if r.tie is None else r.replace(tie=None) for r in top]

    def _build_tree(self, depth: int | None) -> ModuleNode:
        """The module tree down to ``depth`` levels (all of it for None), built in one pass over the records.

        A module below ``depth`` gets no node: its tensors count in its ancestor at ``depth``, which keeps
        only the tensors and aliases it holds itself (what :meth:`ModuleNode.pruned` leaves). So the default
        three-level view of a million-tensor checkpoint builds only the modules it shows.
        """
        source = self.inventory.source
        types = self.inventory.module_types
        if depth is not None:
            depth = max(depth, 0)
        root = ModuleNode("", types.get(""))
        nodes: dict[str, ModuleNode] = {"": root}  # path -> its node
        below: dict[str, ModuleNode] = {}  # path of a module under the cut -> the node that counts it
        created = [root]  # parents before their children
        text = 0  # characters of the paths built, against MAX_TREE_TEXT

        def place(module: str) -> ModuleNode:
            """The node counting ``module``'s tensors, made with any missing ancestors (a loop: names nest
            up to MAX_NAME_PARTS deep)."""
            nonlocal text
            path = module
            if depth is not None and module.count(".") >= depth:
                path = ".".join(module.split(".", depth)[:depth])
            missing = []
            while path not in nodes:
                missing.append(path)
                path = path.rpartition(".")[0]
            parent = nodes[path]
            for path in reversed(missing):
                text += len(path)
                if text > MAX_TREE_TEXT:
                    raise ParamscopeError(source, _TREE_TEXT_REASON)
                node = nodes[path] = ModuleNode(path, types.get(path))
                if parent.children:
                    parent.children.append(node)
                else:
                    parent.children = [node]
                created.append(node)
                parent = node
            if parent.path != module:
                below[module] = parent
            return parent

        parameter, buffer, quant_aux = Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX
        constant = Role.CONSTANT  # a graph's literal (ONNX): counted apart, never drawn in the tree
        table = self._table
        if table is not None and depth is not None:
            return self._cut_tree(table, depth, place, nodes, created)
        if table is not None:
            # Over the columns (no tie, nothing uninitialized, no trainability): a module keeps the indices of
            # the tensors it holds, and their records are made only if they are read (ModuleNode.tensors)
            for index, (name, role, numel, size) in enumerate(
                zip(table.names, table.roles, table.numel, table.nbytes, strict=True)
            ):
                if role is constant:
                    continue
                module = name.rpartition(".")[0]
                node = nodes.get(module) or below.get(module) or place(module)
                if node.path == module:
                    _hold(node, index, table)
                if role is parameter:
                    node.parameters += numel
                    node.bytes += size or 0
                elif role is buffer:
                    node.buffers += numel
                    node.bytes += size or 0
                elif role is quant_aux:
                    node.bytes += size or 0
            return self._sum_up(created)
        aliases = {id(r) for group in self._aliased.values() for r in group[1:]}
        from paramscope.ties import is_stored_copy
        # Nodes are created in the order the source listed tensors, aliases and uninitialized ones included.
        last = None  # the module of the record before (a live model lists its records module by module)
        node, own = root, False
        for record in self.inventory.tensors:
            if record.role is constant:
                continue
            module = record.name.rpartition(".")[0]
            if module != last:
                last = module
                node = nodes.get(module) or below.get(module) or place(module)
                own = node.path == module
            if aliases and id(record) in aliases:
                # a stored copy (ties.STORED_COPY) counts once but is held twice: its bytes are the file's
                if record.role is parameter and record.shape is not None and is_stored_copy(record):
                    node.bytes += record.nbytes or 0
                continue
            if own:
                held = node._held  # a list of records on this path (never a table's indices)
                if held:
                    held.append(record)
                else:
                    node._held = [record]
            if record.shape is None:
                continue
            role = record.role
            if role is parameter:
                numel = record._numel
                if numel is None:
                    numel = record.numel
                node.parameters += numel
                size = record._nbytes  # the property's value where it is known (a source or sized() set it)
                node.bytes += (size if size is not False else record.nbytes) or 0
                if record.trainable is True:
                    node.trainable += numel  # type: ignore[operator]
            elif role is buffer:
                node.buffers += record.numel
                node.bytes += record.nbytes or 0
            elif role is quant_aux:
                node.bytes += record.nbytes or 0
        if aliases:
            _name_aliases(self._alias_places(), nodes)
        return self._sum_up(created)

    def _alias_places(self) -> list[tuple[str, tuple[str, str]]]:
        """(module, (alias name, canonical name)) for every alias: the node of its module names it, grouped by its
        canonical tensor in the order those were first listed."""
        first = {id(group[0]): group for group in self._aliased.values()}
        if not first:
            return []
        placed = []
        for head in self._heads:
            group = first.get(id(head))
            if group is not None:
                placed += [(alias.name.rpartition(".")[0], (alias.name, head.name)) for alias in group[1:]]
        return placed

    def _cut_tree(self, table: Table, depth: int, place: Callable[[str], ModuleNode], nodes: dict[str, ModuleNode],
                  created: list[ModuleNode]) -> ModuleNode:
        """The tree to ``depth`` over columns, by runs: the names that follow one another under the same shown
        module (a file lists a layer's tensors together) are one run, found in C (``startswith`` its module and a
        dot, over the names that follow), and a run's figures are C sums over its slice of the columns. Python runs
        once per run and per name shallower than ``depth``, not once per tensor; names in any order give the same
        tree (a module split over several runs gathers them all), only more slowly: where the first names fall in
        runs of fewer than :data:`_SHORT_RUNS` on average (shuffled names, a flat list), and where a graph's constant
        (never drawn) is held, the tree is made by :meth:`_cut_tree_counted`."""
        from itertools import compress, takewhile
        from operator import is_, itemgetter, methodcaller, not_

        names, roles = table.names, table.roles
        following = iter(names)
        if Role.CONSTANT in roles or not hasattr(following, "__setstate__"):
            return self._cut_tree_counted(table, depth, place, nodes, created)

        def run_end(index: int, name: str) -> int:
            """The end of the run of names under ``name``'s cut (``name`` has ``depth`` dots or more)."""
            following.__setstate__(index + 1)  # a list iterator set to a position: islice would walk to it
            prefix = ".".join(name.split(".", depth)[:depth]) + "."
            return index + 1 + len(list(takewhile(methodcaller("startswith", prefix), following)))

        sample = min(len(names), _SAMPLED_NAMES)
        index = runs = 0
        while depth and index < sample and runs * _SHORT_RUNS <= sample:
            name = names[index]
            index = run_end(index, name) if name.count(".") >= depth else index + 1
            runs += 1
        if runs * _SHORT_RUNS > sample:
            return self._cut_tree_counted(table, depth, place, nodes, created)
        numel, nbytes = table.numel, table.nbytes
        parameter, buffer, quant_aux = Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX
        count = len(names)
        held: list[int] = []  # the tensors a shown module holds itself, in the order listed
        index = 0
        while index < count:
            name = names[index]
            if depth == 0:  # the root's own: module "" (which ".w" has too)
                cut, end = "", count
                held = list(compress(range(count), map(not_, map(itemgetter(0), map(methodcaller("rpartition", "."),
                                                                                     names)))))
            elif name.count(".") >= depth:  # its module has `depth` parts or more: cut there, with the names after
                cut = ".".join(name.split(".", depth)[:depth])
                end = run_end(index, name)
                # held: the run's names with no "." after the cut's (the module is the cut); usually none
                start = len(cut) + 1
                if min(map(str.find, names[index:end], repeat("."), repeat(start))) < 0:
                    found = map(str.find, names[index:end], repeat("."), repeat(start))
                    held += compress(range(index, end), map((-1).__eq__, found))
            else:  # a module above the cut, shown as it is and holding the tensor
                cut, end = name.rpartition(".")[0], index + 1
                held.append(index)
            node = nodes.get(cut) or place(cut)
            kinds = roles[index:end]
            if kinds.count(parameter) == end - index:  # the common run: parameters only
                node.parameters += sum(numel[index:end])
                node.bytes += sum(filter(None, nbytes[index:end]))
            else:
                for role in (parameter, buffer, quant_aux):
                    if role not in kinds:
                        continue
                    mask = list(map(is_, kinds, repeat(role)))
                    node.bytes += sum(filter(None, compress(nbytes[index:end], mask)))
                    if role is parameter:
                        node.parameters += sum(compress(numel[index:end], mask))
                    elif role is buffer:
                        node.buffers += sum(compress(numel[index:end], mask))
            index = end
        for index in held:
            _hold(nodes[names[index].rpartition(".")[0]], index, table)
        return self._sum_up(created)

    def _cut_tree_counted(self, table: Table, depth: int, place: Callable[[str], ModuleNode],
                          nodes: dict[str, ModuleNode], created: list[ModuleNode]) -> ModuleNode:
        """:meth:`_cut_tree` for any order of names: each tensor's figures grouped in C by the shown module that
        counts them: its module cut to ``depth`` parts (a regular expression's match, mapped over the names), then
        a ``Counter`` of (cut, dtype, shape, role). Python runs once per distinct group and per tensor a shown
        module holds itself, not once per tensor."""
        import re
        from collections import Counter
        from itertools import compress
        from operator import itemgetter, methodcaller

        modules = list(map(itemgetter(0), map(methodcaller("rpartition", "."), table.names)))
        if depth == 0:
            cuts = [""] * len(modules)
        else:  # the first `depth` dotted parts (fewer where the module has fewer)
            cut = re.compile(rf"[^.]*(?:\.[^.]*){{0,{depth - 1}}}")
            cuts = list(map(methodcaller("group"), map(cut.match, modules)))
        by_id = {id(role): role for role in Role}
        sizes = {(dtype, shape): (numel, size) for dtype, shape, _, numel, size, _ in self._groups}
        parameter, buffer, quant_aux = Role.PARAMETER, Role.BUFFER, Role.QUANT_AUX
        # Nodes are made in the order their first tensor was listed (a Counter keeps first-seen order)
        for (path, dtype, shape, role_id), count in Counter(
            zip(cuts, table.dtypes, table.shapes, map(id, table.roles), strict=True)
        ).items():
            role = by_id[role_id]
            if role is Role.CONSTANT:  # a graph's literal: not drawn in the tree
                continue
            node = nodes.get(path) or place(path)
            numel, size = sizes[dtype, shape]
            if role is parameter:
                node.parameters += numel * count
                node.bytes += (size or 0) * count
            elif role is buffer:
                node.buffers += numel * count
                node.bytes += (size or 0) * count
            elif role is quant_aux:
                node.bytes += (size or 0) * count
        if self._packed:  # packed entries count their logical elements, not their shapes'
            shapes, numels = table.shapes, table.numel
            for index in table.sparse["quant"]:
                role = table.roles[index]
                stored = 1
                for dim in shapes[index]:  # type: ignore[union-attr]
                    stored *= dim
                if role is parameter:
                    nodes[cuts[index]].parameters += numels[index] - stored
                elif role is buffer:
                    nodes[cuts[index]].buffers += numels[index] - stored
        # the tensors a shown module holds itself: those whose module is its own cut
        for index in compress(range(len(modules)), map(str.__eq__, cuts, modules)):
            if table.roles[index] is not Role.CONSTANT:
                _hold(nodes[cuts[index]], index, table)
        return self._sum_up(created)

    def _sum_up(self, created: list[ModuleNode]) -> ModuleNode:
        """Each node's figures with its subtree's added; ``created`` lists parents before their children (the
        root first), so reverse creation order is bottom-up. Children are put in natural order
        (:func:`natural_order`). Returns the root."""
        natural = self._natural
        for node in reversed(created):
            children = node.children
            if not children:  # a leaf (most nodes): nothing to add
                continue
            if natural and len(children) > 1 and natural_order(children):
                self._reordered = True
            parameters, trainable, buffers, size = node.parameters, node.trainable, node.buffers, node.bytes
            for child in children:
                parameters += child.parameters
                trainable += child.trainable  # type: ignore[operator]
                buffers += child.buffers
                size += child.bytes
            node.parameters, node.trainable, node.buffers, node.bytes = parameters, trainable, buffers, size
        if not self._trainability_known:
            for node in created:
                node.trainable = None
        return created[0]

    def tree(self, depth: int | None = None, *, natural: bool = True) -> ModuleNode:
        """The module tree; below ``depth`` levels, nodes keep their totals but lose their children.

        Siblings are in natural order (:func:`natural_order`: what people read); ``natural=False`` keeps the
        source's order, for the JSON document, whose every module would otherwise be looked at again for a
        program that can sort for itself. Built once per depth and order and kept (treat it as read-only); only
        the levels asked for are built. A live model's tree is counted whole from its walk and its nodes made as
        they are read (:class:`_WalkTree`)."""
        key = (depth, natural)
        root = self._trees.get(key)
        if root is None and self._walk_countable:
            # (not in a pause of the collector: a pause starts by collecting the young objects, which costs a small
            # model more than the few collections its running totals bring)
            tree = _WalkTree(self.inventory, self._walk_counted, self._trainability_known, depth, natural)
            root = self._trees[key] = tree.root()
        if root is None:
            full = self._trees.get((None, natural))
            with paused_gc():
                if full is not None and depth is not None:
                    root = full.pruned(depth)
                else:
                    self._natural = natural
                    root = self._build_tree(depth)
            self._trees[key] = root
        return root

    @cached_property
    def _parameter_mask(self) -> list[bool] | None:
        """A report over columns: whether each entry is a parameter (a table's roles are Role members: compared by
        identity, in C), made once for :attr:`embedding`, :attr:`by_type` and :meth:`module_columns` (which drops
        it); None where every entry is one (counted, in C)."""
        from operator import is_

        table = self._table
        assert table is not None
        roles = table.roles
        return None if table.role_set() <= {Role.PARAMETER} else list(map(is_, roles, repeat(Role.PARAMETER)))

    @cached_property
    def _tensor_modules(self) -> list[str]:
        """Each entry's module (its name less the last part) of a report over columns, made once for :attr:`by_type`
        and :meth:`module_columns`, which drops it."""
        table = self._table
        assert table is not None
        return table.modules()  # (the rules may have made them already)

    def module_columns(self) -> ModuleColumns | None:
        """Every module of a report over columns, as :meth:`tree` ``(None, natural=False).walk()`` gives them, but
        as columns (no node per module): for the JSON document's ``modules``, which draws each module once.

        Made in one pass over the distinct modules in the order their first tensor was listed (each made with its
        missing ancestors, as :meth:`_build_tree` makes nodes). That order is the tree's depth-first order when
        every module's parent is on the path to the module made before it, as in any file whose names are sorted
        (safetensors headers are): None otherwise, or where the report is not over columns or holds a graph's
        constant, and for a tree already built (the caller walks it).

        The one pass goes over runs of tensors of one module listed together (as a header lists them), their sums
        taken beforehand in C from running totals, and places a group of sibling runs at a time (:func:`_by_siblings`;
        :func:`_one_by_one` where a module's runs are apart); the sums are put at their places by C loops after. A
        100,000-tensor header and DeepSeek-V3's 91,991 tensors are benchmarked: on them every step per module counts."""
        table = self._table
        modules = self.__dict__.pop("_tensor_modules", None)  # made for by_type too: not kept past this
        mask = self.__dict__.pop("_parameter_mask", False)  # (False: not made yet; None: every entry a parameter)
        if table is None or (None, False) in self._trees or Role.CONSTANT in table.role_set():
            return None
        from itertools import accumulate, compress, islice
        from operator import is_, mul, ne, sub

        n = len(table.names)
        if modules is None:
            modules = table.modules()
        table.forget_modules()  # not kept past this (held here until the runs are found)
        # Runs: the tensors of one module listed one after another, run k from starts[k] to starts[k + 1]
        boundary = [*map(ne, modules, [None, *modules[:-1]]), True]  # a run starts here (or all end)
        starts = list(compress(range(n), boundary))
        single = len(starts) == n  # every run a single tensor (a file of one weight per module): runs are tensors
        runs = modules if single else list(map(modules.__getitem__, starts))
        del modules, starts  # (let go before the modules are made: their memory is taken again)
        # Each run's own sums: parameters and buffers count their elements, bytes every stored tensor's but
        # optimizer state's. Most files hold parameters only (a quantized one their scales too), of known sizes:
        # a column is masked by role only where another role is there, and buffers summed only where there are.
        # Each is streamed through its running total, of which only the values at the runs' bounds are kept.
        roles, numel = table.roles, table.numel
        present = table.role_set()  # (the roles found once: no pass over the column per role asked)
        sizes = table.nbytes if table.nbytes.count(None) == 0 else [size or 0 for size in table.nbytes]
        if mask is False:
            mask = None if table.role_set() <= {Role.PARAMETER} else list(map(is_, roles, repeat(Role.PARAMETER)))
        mixed = mask is not None
        columns = [map(mul, numel, mask) if mixed else numel,
                   map(mul, numel, map(is_, roles, repeat(Role.BUFFER))) if mixed and Role.BUFFER in present else None,
                   map(mul, sizes, map(is_not, roles, repeat(Role.OPTIMIZER_STATE)))
                   if mixed and Role.OPTIMIZER_STATE in present else sizes]
        per_run: list[list[int] | None] = []
        marks: list[int] = []
        for column in columns:
            if column is None:
                per_run.append(None)
            elif single:  # each run's sums are its tensor's
                per_run.append(column if type(column) is list else list(column))
            else:
                marks = list(compress(accumulate(column, initial=0), boundary))
                per_run.append(list(map(sub, islice(marks, 1, None), marks)))
        del boundary, mask, sizes, marks  # (let go before the modules are made: their memory is taken again)
        any_buffers = columns[1] is not None
        del columns
        # The modules, each made after its parent (missing ancestors made on the way), each module's own sums laid
        # out beside it by the groups (each run's module a place of its own), else added at its module's place
        stretches: list[tuple[int, int, int, int]] = []
        own: list[list[int] | None] = [None if sums is None else [0] for sums in per_run]
        placed = _by_siblings(runs, stretches, [(sums, own[k]) for k, sums in enumerate(per_run)  # type: ignore[misc]
                                                if sums is not None])
        if placed is None:
            stretches = []
            placed = _one_by_one(runs, self.source)
            own = [None, None, None]
        del runs
        paths, parents, depths, places, again, ordered = placed
        count = len(parents)
        parameters, buffers, size = (column if column is not None else [0] * count for column in own)
        if own[0] is None:  # placed one by one: each run's sums put at its module's place
            if again:  # a place can take the sums of several runs
                for at, own_parameters, own_buffers, own_size in zip(
                        places, *(repeat(0) if sums is None else sums for sums in per_run), strict=False):
                    parameters[at] += own_parameters
                    buffers[at] += own_buffers
                    size[at] += own_size
            else:
                from collections import deque

                for column, sums in zip((parameters, buffers, size), per_run, strict=True):
                    if sums is not None:
                        deque(map(column.__setitem__, places, sums), maxlen=0)
        del places, per_run, own
        if sum(map(len, paths)) > MAX_TREE_TEXT:
            raise ParamscopeError(self.source, _TREE_TEXT_REASON)
        if not ordered:
            return None
        return self._summed(paths, parents, depths, parameters, buffers, size, any_buffers, stretches)

    def _summed(self, paths: list[str], parents: list[int], depths: list[int], parameters: list[int],
                buffers: list[int], size: list[int], any_buffers: bool,
                stretches: list[tuple[int, int, int, int]] | None = None) -> ModuleColumns:
        """:meth:`module_columns`' columns from each module's own sums, its children's added (modules depth first).
        The stretches :func:`_by_siblings` placed at once are summed by C loops (:func:`_stretches_summed`); the
        other modules one by one."""
        columns = [parameters, size, buffers] if any_buffers else [parameters, size]
        bottom_up: Iterable[int] = range(len(parents) - 1, 0, -1)  # children after their parents: backwards
        rest = _stretches_summed(parents, columns, stretches) if stretches else None
        if rest is not None:
            bottom_up = rest
        if not any_buffers:  # nothing in buffers to add up
            for at in bottom_up:
                up = parents[at]
                parameters[up] += parameters[at]
                size[up] += size[at]
        else:
            for at in bottom_up:
                up = parents[at]
                parameters[up] += parameters[at]
                buffers[up] += buffers[at]
                size[up] += size[at]
        return ModuleColumns(paths, depths, parameters, 0 if self._trainability_known else None, buffers, size)

    @cached_property
    def _walk_countable(self) -> bool:
        """Whether the tree is a live walk's, counted by :class:`_WalkTree`: every path short enough that the whole
        tree passes :data:`MAX_TREE_TEXT` (otherwise the build by names counts what it makes, and may refuse)."""
        walk = self.inventory.walk
        return walk is not None and self._table is None and sum(map(len, walk.paths)) <= MAX_TREE_TEXT

    @cached_property
    def _walk_counted(self) -> tuple[list[tuple[int, ...]], set[int], list[tuple[str, tuple[str, str]]]]:
        """What every tree of a live walk reads (:class:`_WalkTree`), made once for every depth and order: the
        running totals of its records (:func:`_tally`), the ids of its aliases, and where each is named."""
        return self._tallied[4], self._alias_ids, self._alias_places()  # type: ignore[return-value]

    @cached_property
    def natural_tensors(self) -> list[TensorRecord]:
        """Every record (aliases included) in the module tree's natural order: where the tree had to put numbered
        siblings in order (a file lists ``layers.10`` before ``layers.2``), records go module by module in the
        tree's order, each module's in the source's; elsewhere (a live model) exactly :attr:`tensors`."""
        try:
            root = self.tree(None)
        except ParamscopeError:  # names too deep to build every module of: the rows stay in the source's order
            return self.tensors
        if type(root) is _WalkNode:  # made as read: whether a sibling moves is known once all are made
            for _ in root.walk():
                pass
            self._reordered = self._reordered or root._of.reordered
        if not self._reordered:
            return self.tensors
        rank = {node.path: index for index, node in enumerate(root.walk())}
        return sorted(self.tensors, key=lambda r: rank[r.name.rpartition(".")[0]])

    def modules(self, depth: int | None = None) -> list[ModuleNode]:
        """The tree flattened depth first (root first), down to ``depth``."""
        return list(self.tree(depth).walk())

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
        import fnmatch  # only a --filter matches a glob

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
        return Report(self.inventory.replace(tensors=kept))

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """The JSON document (schema ``paramscope.report/1``, published in ``paramscope/schema/report-v1.json``),
        drawn by :mod:`paramscope.renderers.json`."""
        return _view("dict")(self, depth=depth)

    def _repr_html_(self) -> str:
        """The summary Jupyter shows for a report (drawn by :mod:`paramscope.renderers.html`)."""
        return _view("html")(self)

    def to_pandas(self) -> Any:
        """DataFrames of the tensors and of the modules (``pandas`` is an extra); see :mod:`paramscope.frames`."""
        return _view("pandas")(self)

    def __str__(self) -> str:
        return _view("text")(self)

    def __repr__(self) -> str:
        return (
            f"<Report {self.source!r} total={self.total} trainable={self.trainable} "
            f"buffers={self.buffers} tensors={len(self.tensors)}>"
        )
