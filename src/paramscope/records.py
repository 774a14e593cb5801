"""The one record every source yields: a tensor, as a checkpoint or a module holds it.

Sources (``paramscope.sources.*``) turn a live module or a file into an :class:`Inventory` of
:class:`TensorRecord`; :mod:`paramscope.report` aggregates those into a :class:`~paramscope.report.Report`.
A record holds only what the source observed. Everything derived (element count, bytes) is a
property, so it can never disagree with the shape and dtype it was derived from.
"""

from __future__ import annotations

import enum
import math
from collections import namedtuple

from paramscope import dtypes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping
    from typing import Any


# Limits on names, the same for every source (report.check_names applies them once to every inventory; a
# reader that joins names from parts applies the first before it joins, files.NameBudget). Real checkpoints
# stay far below them (the longest names seen are a few hundred characters and about 20 dotted parts);
# past them a name is an attack.
MAX_NAME_LENGTH = 65_536
"""Characters in one tensor name, its path included."""
MAX_NAME_PARTS = 1_000
"""Dotted parts in one tensor name (``a.b.c`` has 3): module nesting deeper than this is refused."""


class Role(str, enum.Enum):
    """What a tensor is to the model."""

    PARAMETER = "parameter"
    """A weight: ``nn.Parameter`` in a live module; a floating-point (or block-quantized) tensor in a file."""
    BUFFER = "buffer"
    """State that is not trained: BatchNorm running stats, position ids, integer or bool tensors in files."""
    OPTIMIZER_STATE = "optimizer_state"
    """Optimizer moments and the like, found in training checkpoints beside the model weights."""
    QUANT_AUX = "quant_aux"
    """Bookkeeping of a quantization scheme (scales, zero points, group indices): not parameters."""
    CONSTANT = "constant"
    """A literal of the computation stored in a graph file (ONNX: GELU's 0.5, a reshape's target shape, a clip
    bound): not learned and not state, counted apart and left out of the module tree."""


class QuantInfo:
    """How a packed or quantized tensor stores its logical weights.

    ``logical_numel`` is the number of weights the tensor stands for; the record's own shape and dtype
    describe what is stored (for instance int32 words that each pack eight 4-bit weights).
    """

    __slots__ = ("bits", "logical_numel", "scheme")

    def __init__(self, scheme: str, logical_numel: int, bits: float | None = None) -> None:
        self.scheme = scheme
        self.logical_numel = logical_numel
        self.bits = bits

    def __repr__(self) -> str:
        return f"QuantInfo({self.scheme!r}, {self.logical_numel}, bits={self.bits})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantInfo):
            return NotImplemented
        return (self.scheme, self.logical_numel, self.bits) == (other.scheme, other.logical_numel, other.bits)

    __hash__ = None  # type: ignore[assignment]


class TensorRecord:
    """One named tensor.

    ``shape`` is None for a tensor whose shape is not known yet (a lazy module's
    ``UninitializedParameter``). ``trainable`` is None where it cannot be known (a file does not say
    whether a weight was frozen). ``tie`` is an opaque key: records with equal keys are the same
    storage seen under several names, and are counted once. ``owner_type`` is the class name of the
    module that holds the tensor directly, when the source knows it (``Linear``, ``Embedding``).

    Records are treated as immutable once a source has made them: a stage that changes one makes a new one
    (:meth:`replace`). (A plain slotted class rather than
    a frozen dataclass: a model can have 100,000 tensors, and both building them and importing
    ``dataclasses`` are measurable in a CLI run that is benchmarked against ``python -c pass``.)
    """

    __slots__ = ("_nbytes", "_numel", "dtype", "extra", "name", "origin", "owner_type", "persistent", "quant", "role",
                 "shape", "tie", "trainable")

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...] | None,
        dtype: str,
        role: Role = Role.PARAMETER,
        trainable: bool | None = None,
        tie: Hashable | None = None,
        owner_type: str | None = None,
        persistent: bool | None = None,
        quant: QuantInfo | None = None,
        origin: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.role = role
        self.trainable = trainable
        self.tie = tie
        self.owner_type = owner_type
        self.persistent = persistent
        self.quant = quant
        self.origin = origin
        self.extra = extra
        # Sizes are derived on first use and kept: a report reads them several times per record, and a
        # 1,000,000-tensor checkpoint made recomputing them a measurable part of a run.
        self._numel: int | None = None
        self._nbytes: int | bool | None = False  # False: not computed yet (None is an answer: unknown dtype)

    def replace(self, **changes: Any) -> TensorRecord:
        """A copy with some fields changed: records are never mutated once made (positional: it is hot)."""
        get = changes.get
        return TensorRecord(
            get("name", self.name), get("shape", self.shape), get("dtype", self.dtype), get("role", self.role),
            get("trainable", self.trainable), get("tie", self.tie), get("owner_type", self.owner_type),
            get("persistent", self.persistent), get("quant", self.quant), get("origin", self.origin),
            get("extra", self.extra),
        )

    _COMPARED = ("name", "shape", "dtype", "role", "trainable", "tie", "owner_type", "persistent", "quant", "origin")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorRecord):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._COMPARED)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"TensorRecord({self.name!r}, {self.shape!r}, {self.dtype!r}, role={self.role.value}, "
            f"trainable={self.trainable}, tie={self.tie!r}, owner_type={self.owner_type!r})"
        )

    @property
    def initialized(self) -> bool:
        return self.shape is not None

    @property
    def stored_numel(self) -> int:
        """Elements as stored (0 for an uninitialized tensor)."""
        return math.prod(self.shape) if self.shape is not None else 0

    @property
    def numel(self) -> int:
        """Logical elements: what the tensor counts as, packed quantization unpacked."""
        numel = self._numel
        if numel is None:
            numel = self._numel = self.quant.logical_numel if self.quant is not None else self.stored_numel
        return numel

    @property
    def nbytes(self) -> int | None:
        """Bytes the stored tensor takes, or None for an unknown dtype."""
        size = self._nbytes
        if size is False:
            size = self._nbytes = dtypes.nbytes(self.dtype, self.stored_numel)
        return size  # type: ignore[return-value]

    @property
    def tie_key(self) -> Hashable:
        """The identity used to count shared storage once: ``tie`` if given, else the name."""
        return self.tie if self.tie is not None else ("name", self.name)

    @property
    def module(self) -> str:
        """Path of the module holding the tensor ('' for the root)."""
        return self.name.rpartition(".")[0]


def file_record(name: str, shape: tuple[int, ...], dtype: str, role: Role, origin: str, numel: int,
                nbytes: int | None) -> TensorRecord:
    """A record as a checkpoint reader makes one, its sizes already known (the reader checked them against the
    data offsets): ``TensorRecord(name, shape, dtype, role, origin=origin)`` with ``numel`` and ``nbytes``
    kept, made without a keyword call. Only for a record without ``quant`` (whose numel is its logical count)."""
    record = _new(TensorRecord)
    record.name, record.shape, record.dtype, record.role, record.origin = name, shape, dtype, role, origin
    record.trainable = record.tie = record.owner_type = record.persistent = record.quant = record.extra = None
    record._numel, record._nbytes = numel, nbytes
    return record


_new = object.__new__


def sized(records: list[TensorRecord]) -> tuple[list[TensorRecord], list[int], list[int | None]]:
    """The initialized records, their logical elements and their stored bytes, as three columns; the sizes are
    kept on each record.

    Columns rather than a (record, elements, bytes) tuple per record: zipped, they are read one record at a time
    all the same, and 100,000 tuples that live as long as the report would each be walked by the cyclic garbage
    collector. A model repeats a few (dtype, shape) pairs, so each pair is sized once: a million records cost a
    million dictionary look-ups rather than a million products and dtype look-ups."""
    # The common case, every record initialized and sized already (a live model's, a reader's): the columns are
    # two list comprehensions and three tests in C (a third of the loop below: 1.0 ms against 1.5 for 20,000)
    numels = [r._numel for r in records if r.shape is not None]
    if len(numels) == len(records) and None not in numels:
        sizes = [r._nbytes for r in records]
        if False not in sizes:  # (a size of 0 compares equal to False too: that record takes the loop below)
            return records, numels, sizes  # type: ignore[return-value]
    known: dict[tuple[str, tuple[int, ...]], tuple[int, int | None]] = {}
    kept: list[TensorRecord] = []
    numels: list[int] = []
    sizes: list[int | None] = []
    keep, add_numel, add_size = kept.append, numels.append, sizes.append
    for r in records:
        shape = r.shape
        if shape is None:
            continue
        numel = r._numel
        if numel is not None:  # sized before (or by the reader): numel and, if computed, bytes are kept
            size = r._nbytes
            keep(r)
            add_numel(numel)
            add_size(size if size is not False else r.nbytes)
            continue
        if r.quant is not None:
            numel, size = r.numel, r.nbytes
        else:
            key = (r.dtype, shape)
            found = known.get(key)
            if found is None:
                found = known[key] = (r.numel, r.nbytes)
            else:
                r._numel, r._nbytes = found
            numel, size = found
        keep(r)
        add_numel(numel)
        add_size(size)
    return kept, numels, sizes


def role_for_file_tensor(dtype: str) -> Role:
    """Role of a tensor read from a file: PyTorch cannot train integer or bool tensors.

    Floating, complex and block-quantized tensors are taken to be parameters; anything else
    (``position_ids``, ``num_batches_tracked``, masks) is a buffer.
    """
    known = dtypes.DTYPES.get(dtype)
    if known is not None and known.kind in ("float", "complex", "quantized"):
        return Role.PARAMETER
    return Role.BUFFER


PENDING = {
    "config": "a transformers config.json found beside the weights (a dict, as read): the rules apply it",
    "small_tensors": "read(names) -> {name: bytes}: a few small tensors' bytes from the files read (quantization)",
    "elements": "read(name, indices) -> [bytes] | None: a few elements of a stored tensor (ONNX: ties.py's "
                "transposed head)",
    "weights_beside": "the directory of an architecture's config.json: the fit stage compares weights there",
    "model_config": "a live model's own config (config.to_dict(), a dict): the architecture card is read from it",
    "gguf.models": "a Hub listing's GGUF models (Inventories, in row order): settled to count each row's parameters",
}
"""What ``Inventory.pending`` may hold, by key. Only a reader puts anything there."""


_SPARSE = ("trainable", "tie", "owner_type", "persistent", "quant", "extra")
"""Record fields most tensors leave None: a table keeps them as {row index: value}, only where set."""


_ROLES_BY_LIKELIHOOD = (Role.PARAMETER, Role.QUANT_AUX, Role.BUFFER, Role.OPTIMIZER_STATE, Role.CONSTANT)
assert set(_ROLES_BY_LIKELIHOOD) == set(Role)


class Table:
    """An inventory's tensors as columns: one list per field, the sizes computed once.

    ``names``, ``shapes``, ``dtypes``, ``roles``, ``numel`` (logical elements, 0 for an uninitialized tensor),
    ``nbytes`` (stored bytes, None for an unknown dtype) and ``origins`` hold one entry per tensor, in the
    source's order; the fields most tensors leave None (:data:`_SPARSE`: ties, quantization, trainability,
    owner classes) are ``{index: value}`` maps in ``sparse``, holding only what is set. A reader builds the
    columns directly (a 100,000-tensor header is six lists, not 100,000 objects); :meth:`row` is the
    :class:`TensorRecord` view of one entry for code that wants records. ``uninitialized`` counts the entries
    whose shape is None. Treated as immutable, like records.

    ``facts``: what is known of the names, shapes and dtypes columns as a whole (:data:`TABLE_FACTS`), each worked
    out once, on first use (:meth:`fact`), or found by the checks of the reader that built the columns; a table
    made from another with those three columns unchanged (:meth:`repacked`) keeps them.
    """

    __slots__ = ("_modules", "_role_set", "dtypes", "facts", "names", "nbytes", "numel", "origins", "roles", "shapes",
                 "sparse", "uninitialized")

    def __init__(self, names: list[str], shapes: list[tuple[int, ...] | None], dtypes: list[str], roles: list[Role],
                 numel: list[int], nbytes: list[int | None], origins: list[str],
                 sparse: dict[str, dict[int, Any]] | None = None, uninitialized: int = 0) -> None:
        self.names, self.shapes, self.dtypes, self.roles = names, shapes, dtypes, roles
        self.numel, self.nbytes, self.origins = numel, nbytes, origins
        self.sparse = sparse if sparse is not None else {}
        self.uninitialized = uninitialized
        self.facts: dict[str, bool] = {}
        self._role_set: frozenset[Role] | None = None
        self._modules: list[str] | None = None

    def modules(self) -> list[str]:
        """Each entry's module, its name less the last dotted part (``name.rpartition(".")[0]``), made once for the
        rules (which find the quantization suffixes by what a name has past it) and the report (:meth:`forget_modules`
        lets it go)."""
        modules = self._modules
        if modules is None:
            modules = self._modules = [name.rpartition(".")[0] for name in self.names]
        return modules

    def forget_modules(self) -> None:
        """Drop the modules :meth:`modules` made (made again if asked): the report's last use of them."""
        self._modules = None

    def role_set(self) -> frozenset[Role]:
        """The roles the entries have, found once for whoever asks (the rules, the report's passes: each test of a
        role against the column was a pass of its own). Counted role by role, in C, the commonest first, until
        every entry is accounted for: one pass where all are parameters, two for a quantized file's scales (a set
        of the column would hash each member by its Python ``__hash__``)."""
        present = self._role_set
        if present is None:
            roles = self.roles
            left = len(roles)
            found = []
            for role in _ROLES_BY_LIKELIHOOD:
                if not left:
                    break
                count = roles.count(role)
                if count:
                    found.append(role)
                    left -= count
            present = self._role_set = frozenset(found) if not left else frozenset(roles)
        return present

    def fact(self, name: str) -> bool:
        """Whether fact ``name`` (:data:`TABLE_FACTS`) holds of the names, shapes and dtypes columns: worked out
        (in C, over the whole columns) the first time it is asked, unless the reader's checks found it."""
        known = self.facts.get(name)
        if known is None:
            known = self.facts[name] = _TABLE_FACTS[name](self)
        return known

    @classmethod
    def empty(cls) -> Table:
        return cls([], [], [], [], [], [], [])

    @classmethod
    def from_records(cls, records: list[TensorRecord]) -> Table:
        """The columns of ``records`` (their sizes computed once, by :func:`sized`'s sharing)."""
        sparse: dict[str, dict[int, Any]] = {}
        numel: list[int] = []
        nbytes: list[int | None] = []
        uninitialized = 0
        for index, r in enumerate(records):
            if r.shape is None:
                uninitialized += 1
                numel.append(0)
                nbytes.append(r.nbytes)
            else:
                numel.append(r.numel)
                nbytes.append(r.nbytes)
            for field in _SPARSE:
                value = getattr(r, field)
                if value is not None:
                    sparse.setdefault(field, {})[index] = value
        return cls([r.name for r in records], [r.shape for r in records], [r.dtype for r in records],
                   [r.role for r in records], numel, nbytes, [r.origin for r in records], sparse, uninitialized)

    def __len__(self) -> int:
        return len(self.names)

    def row(self, index: int) -> TensorRecord:
        """The record view of entry ``index`` (a new :class:`TensorRecord`, its sizes the table's)."""
        record = _new(TensorRecord)
        record.name, record.shape, record.dtype = self.names[index], self.shapes[index], self.dtypes[index]
        record.role, record.origin = self.roles[index], self.origins[index]
        record.trainable = record.tie = record.owner_type = record.persistent = record.quant = record.extra = None
        for field, values in self.sparse.items():
            value = values.get(index)
            if value is not None:
                setattr(record, field, value)
        record._numel = self.numel[index] if record.shape is not None else None
        record._nbytes = self.nbytes[index]
        return record

    def rows(self) -> list[TensorRecord]:
        """Every entry as a record, in order."""
        if self.sparse or self.uninitialized:
            return [self.row(i) for i in range(len(self.names))]
        out = []
        append = out.append
        new = _new
        for name, shape, dtype, role, origin, numel, nbytes in zip(
            self.names, self.shapes, self.dtypes, self.roles, self.origins, self.numel, self.nbytes, strict=True
        ):
            record = new(TensorRecord)
            record.name, record.shape, record.dtype, record.role, record.origin = name, shape, dtype, role, origin
            record.trainable = record.tie = record.owner_type = record.persistent = record.quant = None
            record.extra = None
            record._numel, record._nbytes = numel, nbytes
            append(record)
        return out

    def changed(self, records: dict[int, TensorRecord]) -> Table:
        """A new table with the entries at these indices replaced by these records (the rules stage marking a
        few packed weights and their scales); the columns are copied, this table is not changed."""
        names, shapes, dtypes, roles = list(self.names), list(self.shapes), list(self.dtypes), list(self.roles)
        numel, nbytes, origins = list(self.numel), list(self.nbytes), list(self.origins)
        sparse = {field: dict(values) for field, values in self.sparse.items()}
        uninitialized = self.uninitialized
        packing = sparse.setdefault("quant", {})
        flags = any(field in sparse for field in _SPARSE if field != "quant")  # ties, trainability, ... anywhere
        for index, r in records.items():
            shape = r.shape
            if shape is not None and shape is shapes[index] and r.dtype is dtypes[index]:
                # the same storage (a record made from this row, its role or packing changed): the stored bytes
                # stay, and the logical elements are the packing's, else the shape's
                quant = r.quant
                if quant is not None:
                    numel[index] = quant.logical_numel
                elif index in packing:
                    numel[index] = math.prod(shape)
            else:
                uninitialized += (shape is None) - (shapes[index] is None)
                shapes[index], dtypes[index] = shape, r.dtype
                numel[index] = r.numel if shape is not None else 0
                nbytes[index] = r.nbytes
            names[index], roles[index], origins[index] = r.name, r.role, r.origin
            if not flags and r.trainable is None and r.tie is None and r.owner_type is None and r.persistent is None \
                    and r.extra is None:  # the common change: a role and a packing, nothing else to keep
                if r.quant is not None:
                    packing[index] = r.quant
                else:
                    packing.pop(index, None)
                continue
            for field in _SPARSE:
                value = getattr(r, field)
                if value is not None:
                    sparse.setdefault(field, {})[index] = value
                elif field in sparse:
                    sparse[field].pop(index, None)
        sparse = {field: values for field, values in sparse.items() if values}
        return Table(names, shapes, dtypes, roles, numel, nbytes, origins, sparse, uninitialized)

    def repacked(self, changes: Mapping[int, QuantInfo | None]) -> Table:
        """A new table with the rules' packing applied (:func:`paramscope.quantization.changes`): an entry given a
        :class:`QuantInfo` becomes a parameter standing for its logical elements, one given None becomes
        bookkeeping (``Role.QUANT_AUX``); nothing else changes. The columns that change are copied."""
        from collections import deque
        from itertools import compress, repeat
        from operator import attrgetter, is_not, not_

        # Set in C, column by column (DeepSeek-V3 changes 90,000 entries): bookkeeping, then the packed ones. Changes
        # that come split already (paramscope.quantization.SplitChanges: packed, their packings, bookkeeping) are
        # set from their lists; a dict is split here
        split = getattr(changes, "split", None)
        # Packings that stand for the stored elements (SplitChanges.stored: FP8, int8) change no count where nothing
        # was packed before: an entry's numel is then its shape's product, its stored elements. The column is kept
        same = split is not None and getattr(changes, "stored", False) and not self.sparse.get("quant")
        roles, numel = list(self.roles), self.numel if same else list(self.numel)
        sparse = {field: dict(values) for field, values in self.sparse.items()}
        packing = sparse.setdefault("quant", {})
        if split is not None:
            packed, quants, aux = split()
        else:
            indices, quants = list(changes), list(changes.values())
            is_packed = list(map(is_not, quants, repeat(None)))
            aux = list(compress(indices, map(not_, is_packed)))
            packed = list(compress(indices, is_packed))
            quants = list(compress(quants, is_packed))
        deque(map(roles.__setitem__, aux, repeat(Role.QUANT_AUX)), maxlen=0)
        if not self.role_set() <= {Role.PARAMETER}:  # else they are already
            deque(map(roles.__setitem__, packed, repeat(Role.PARAMETER)), maxlen=0)
        packing.update(zip(packed, quants, strict=True))
        if not same:
            deque(map(numel.__setitem__, packed, map(attrgetter("logical_numel"), quants)), maxlen=0)
        sparse = {field: values for field, values in sparse.items() if values}
        table = Table(self.names, self.shapes, self.dtypes, roles, numel, self.nbytes, self.origins, sparse,
                      self.uninitialized)
        table.facts = self.facts  # the same names, shapes and dtypes (lists never changed in place)
        table._modules = self._modules  # of the same names
        return table

    def extend(self, other: Table) -> None:
        """Append ``other``'s entries (a reader joining its shards' tables; only while it builds one)."""
        offset = len(self.names)
        for field, values in other.sparse.items():
            mine = self.sparse.setdefault(field, {})
            mine.update((index + offset, value) for index, value in values.items())
        self.names += other.names
        self.shapes += other.shapes
        self.dtypes += other.dtypes
        self.roles += other.roles
        self.numel += other.numel
        self.nbytes += other.nbytes
        self.origins += other.origins
        self.uninitialized += other.uninitialized
        self.facts = {}  # new entries: worked out again when asked
        self._role_set = None
        self._modules = None


def _distinct(table: Table) -> bool:
    return len(set(table.names)) == len(table.names)


def _typed(table: Table) -> bool:
    # (True,) == (1,): a shape of bools would share a line's text with one of ints
    from itertools import chain

    shapes = table.shapes if not table.uninitialized else [shape for shape in table.shapes if shape is not None]
    return (set(map(type, table.names)) <= {str} and set(map(type, table.dtypes)) <= {str}
            and set(map(type, chain.from_iterable(shapes))) <= {int})


_PLAIN = bytes(set(range(0x20, 0x7F)) - set(b'"\\'))
"""The characters JSON (``encode_basestring_ascii``) writes as themselves: printable ASCII but the quote and
backslash."""


def plain_text(texts: list[str]) -> bool:
    """Whether every text is printable ASCII with nothing JSON escapes (one search over them all, in C)."""
    joined = "".join(texts)
    return joined.isascii() and not joined.encode("ascii").translate(None, _PLAIN)  # nothing left once plain is gone


def _plain_names(table: Table) -> bool:
    return plain_text(table.names)  # (str names only: asked after "typed")


_TABLE_FACTS = {"distinct": _distinct, "typed": _typed, "plain_names": _plain_names}
TABLE_FACTS = {
    "distinct": "no name is given twice",
    "typed": "every name and dtype is a str (no subclass) and every shape a tuple of ints (no bool) or None",
    "plain_names": "every name is printable ASCII without a quote or a backslash: JSON writes it as it is "
                   "(ask only where \"typed\" holds)",
}
"""The facts a :class:`Table` knows of its names, shapes and dtypes columns (:meth:`Table.fact`)."""


ModuleWalk = namedtuple("ModuleWalk", "paths parents starts")
ModuleWalk.__doc__ = """The modules a live walk visited, in its (pre-)order, and where their records are: ``paths[k]``
is module k's path (distinct: module 0 is the root, ''), ``parents[k]`` its parent's index (k > 0: a parent comes
first), and module k holds exactly the records ``starts[k]:starts[k + 1]`` (``starts`` has one more entry, the
number of records), each named ``paths[k]`` + '.' + a name without a dot (the root's: that name alone). So the
tree by index is the tree by names: a source gives one only where that holds."""


class Inventory:
    """Everything one source observed: the tensors, and what it knows about the modules around them.

    The tensors are held as a :class:`Table` of columns (``table``, what the safetensors reader builds) or as
    a list of :class:`TensorRecord` (``tensors``, what the other sources give); each view is made from the
    other on first use and kept, so an inventory read as columns and counted over them never makes a record.

    ``module_types`` maps module paths ('' is the root) to class names where the source knows them.
    ``metadata`` carries format-specific facts shown to the user (a safetensors ``__metadata__``, GGUF
    key/values); ``notes`` are sentences worth telling the user (a lazy module that is not initialized).

    ``architecture`` is the model's architecture card (:class:`paramscope.architecture.Architecture`), set by
    the rules stage from what the reader handed on (a config, GGUF key/values), or None.

    ``pending`` is what a reader hands the stages above it and never shows (see :data:`PENDING`): the
    reader reads, the rules stage (:func:`paramscope.pipeline.settle`) applies rules to what it was given.

    ``walk`` is the module structure a live walk saw (:class:`ModuleWalk`), which lets the report build the module
    tree by index instead of from names; it belongs to these very records and module types, so :meth:`replace`
    drops it with either.

    An inventory is treated as immutable, like its records: a stage returns a new one (:meth:`replace`).
    """

    __slots__ = ("_rows", "_table", "architecture", "format", "metadata", "module_types", "notes", "pending", "source",
                 "walk")
    _FIELDS = ("source", "format", "module_types", "metadata", "notes", "pending", "architecture")

    def __init__(
        self,
        source: str,
        format: str,
        tensors: list[TensorRecord] | None = None,
        module_types: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        notes: list[str] | None = None,
        pending: dict[str, Any] | None = None,
        table: Table | None = None,
        architecture: Any = None,
        walk: ModuleWalk | None = None,
    ) -> None:
        self.source = source
        self.walk = walk
        self.architecture = architecture  # paramscope.architecture.Architecture, set by pipeline.settle
        self.format = format
        if tensors is None and table is None:
            tensors = []
        self._rows = tensors
        self._table = table
        self.module_types = module_types if module_types is not None else {}
        self.metadata = metadata if metadata is not None else {}
        self.notes = notes if notes is not None else []
        self.pending = pending if pending is not None else {}

    @property
    def tensors(self) -> list[TensorRecord]:
        """The records, in the source's order (made from the table on first use, then kept)."""
        rows = self._rows
        if rows is None:
            from paramscope.gcpause import paused_gc

            with paused_gc():  # 100,000 new objects would wake the collector a hundred times for nothing
                rows = self._rows = self._table.rows()  # type: ignore[union-attr]
        return rows

    @property
    def table(self) -> Table:
        """The tensors as columns (made from the records on first use, then kept)."""
        table = self._table
        if table is None:
            table = self._table = Table.from_records(self._rows)  # type: ignore[arg-type]
        return table

    @property
    def columnar(self) -> bool:
        """Whether the table exists already (so counting over it makes nothing new)."""
        return self._table is not None

    @property
    def names(self) -> list[str]:
        """Every tensor's name, in order, without making records."""
        if self._table is not None:
            return self._table.names
        return [r.name for r in self._rows]  # type: ignore[union-attr]

    def __len__(self) -> int:
        return len(self._table) if self._table is not None else len(self._rows)  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> Inventory:
        """A copy with some fields changed: ``tensors`` (a list of records) or ``table`` replaces both views."""
        fields = {name: getattr(self, name) for name in self._FIELDS}
        if "tensors" in changes or "table" in changes:
            fields["tensors"], fields["table"] = changes.pop("tensors", None), changes.pop("table", None)
            # new records (reordered, filtered, renamed): the walk's indices and paths say nothing about them
        else:
            fields["tensors"], fields["table"], fields["walk"] = self._rows, self._table, self.walk
        fields.update(changes)
        if "module_types" in changes:  # the walk's class names are these, path for path
            fields["walk"] = None
        return Inventory(**fields)

    def __repr__(self) -> str:
        return f"<Inventory {self.source!r} {self.format} tensors={len(self)}>"
