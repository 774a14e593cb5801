"""Source: a live ``torch.nn.Module`` (on any device, ``meta`` included).

Every rule of ``Module.parameters()`` made explicit:

* the traversal visits every submodule under every name it is reachable by, so a submodule used
  twice, or a parameter assigned to two attributes, shows all its names (``parameters()`` silently
  keeps the first); the aggregation then counts each tensor once;
* a tensor is identified by the object itself, or, for tensors with real storage, by where its data
  lives, so two ``Parameter`` objects over the same memory are one tie group too. (On the meta device
  every ``data_ptr()`` is 0, which is why identity comes first.)
* parameters held directly by a container module (not a leaf) are recorded at that module's path;
* ``UninitializedParameter`` (lazy modules) are recorded with an unknown shape, never touched;
* buffers are recorded apart, marked persistent or not (non-persistent buffers are not saved in a
  ``state_dict``).

torch is imported only here and only when a module is inspected.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Hashable
from typing import Any

from paramscope import dtypes
from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import Inventory, ModuleWalk, QuantInfo, Role, TensorRecord
from paramscope.sources import sharding
from paramscope.sources.sharding import wrapper_child


def _is_ancestor(module_id: int, chain: tuple | None) -> bool:
    """Whether ``module_id`` is on ``chain``, the walk's ``(id, parent chain)`` links back to the root."""
    while chain is not None:
        if chain[0] == module_id:
            return True
        chain = chain[1]
    return False


_DTYPE_NAMES: dict[Any, str] = {}


_DTYPE_FACTS: dict[Any, tuple[str, int]] = {}
"""torch dtype -> (its name, :func:`_itemsize`): one look-up per plain parameter."""


def _itemsize(name: str) -> int:
    """Bytes per element of a dtype stored one element at a time (float32: 4), else 0 (unknown, or in blocks)."""
    known = dtypes.DTYPES.get(name)
    return known.block_bytes if known is not None and known.block_elements == 1 else 0


def _dtype_name(tensor: Any) -> str:
    dtype = tensor.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def _identity(tensor: Any) -> Hashable:
    """What makes two tensors one, for the one dictionary of the walk: the data's address for a tensor with
    real storage (two Parameters over one storage are one tensor), else the object (an ``int``, no tuple made
    for the common meta-device tensor). :func:`_tie_key` is what a tied record then carries."""
    if not tensor.is_meta:
        return _tie_key(tensor)
    return id(tensor)


def _tie_key(tensor: Any) -> Hashable:
    """Object identity, or the data's address for tensors that have real storage (see module doc)."""
    if not tensor.is_meta:
        try:
            address = tensor.data_ptr()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without plain storage
            address = 0
        if address:
            return ("data", str(tensor.device), address, tuple(tensor.shape), tensor.dtype)
    return ("object", id(tensor))


def _model_config(module: Any) -> dict[str, Any] | None:
    """``module.config.to_dict()`` where the module carries a transformers-style config, else None."""
    to_dict = getattr(getattr(module, "config", None), "to_dict", None)
    if not callable(to_dict):
        return None
    try:
        config = to_dict()
    except Exception:  # a foreign object's to_dict: the card is simply unknown
        return None
    return config if isinstance(config, dict) else None


def from_module(module: Any, *, source: str | None = None, example_input: Any = None) -> Inventory:
    """Records for every parameter and buffer of ``module``.

    With ``example_input`` (a tensor, a tuple of them, or a shape such as ``(1, 3, 32, 32)``), lazy
    modules are first materialised by a dry run on the meta device, on a copy: ``module`` itself is
    never changed and no weight memory is allocated.
    """
    torch = _import_torch(source or type(module).__name__)
    from torch.nn.parameter import UninitializedTensorMixin

    name = source or type(module).__name__
    if not isinstance(module, torch.nn.Module):
        raise ParamscopeError(name, f"expected a torch.nn.Module, got {type(module).__name__}")
    if example_input is not None and _has_uninitialized(module, UninitializedTensorMixin):
        module = dry_run_on_meta(module, example_input, source=name)

    try:
        with paused_gc():
            found = _Found()
            records, module_types, lazy, walk = _collect(module, UninitializedTensorMixin, torch.nn.Parameter, found,
                                                         name)
    except (TypeError, AttributeError) as exc:
        # the walk trusts what nn.Module keeps; a module that broke it by hand is named here, not on the hot path
        problem = _malformed(module, torch)
        if problem is None:
            raise
        raise ParamscopeError(name, problem) from exc
    notes = []
    if lazy:
        notes.append(
            f"{len(lazy)} tensors of lazy modules are uninitialized and not counted; "
            "give an input shape (--input-shape / example_input=) to materialise them on the meta device"
        )
    metadata: dict[str, Any] = {}
    if found.wrappers:
        metadata["wrappers"] = list(dict.fromkeys(found.wrappers))
    if found.sharding:
        labels = [sharding.SHARDING_LABELS[k] for k in sorted(found.sharding)]
        metadata["sharding"] = labels
        local = local_numel(records)
        metadata["local_numel"] = local
        notes.append(
            f"parameters are sharded ({'; '.join(labels)}): counts are of the whole, unsharded model; "
            f"this process holds {local:,} parameter elements of them"
        )
    # quantized modules found: the rules stage summarises them as it does a file's (paramscope.pipeline.settle)
    pending: dict[str, Any] = {"module_quantization": sorted(found.schemes)} if found.schemes else {}
    model_config = _model_config(module)
    if model_config is not None:  # a transformers model's own config: the rules stage reads its architecture card
        pending["model_config"] = model_config
    return Inventory(name, "torch.nn.Module", records, module_types, metadata=metadata, notes=notes, pending=pending,
                     walk=walk)


INT64_MAX = (1 << 63) - 1


def _check_numel(source: str, name: str, shape: tuple[int, ...] | None, numel: int) -> None:
    """Refuse a shape no tensor can have: torch counts elements in int64, so a larger or negative count
    comes from metadata a framework (or a hostile module) set by hand, such as ZeRO-3's ``ds_shape``."""
    if shape is None:
        return
    if any(d < 0 for d in shape):
        raise ParamscopeError(source, f"tensor {name!r} has a negative dimension in its shape")
    if numel > INT64_MAX or math.prod(shape) > INT64_MAX:  # the logical count, then the stored one
        raise ParamscopeError(source, f"tensor {name!r} declares a shape of {len(shape)} dimensions "
                                      "holding more elements than int64 can count")


def local_numel(records: list[TensorRecord]) -> int:
    """Parameter elements this process holds: each record's ``extra['local_numel']`` where a sharded
    source set it, else the whole tensor (DDP and plain modules hold everything); each tie group once."""
    seen: set[Hashable] = set()
    total = 0
    for r in records:
        if r.role is not Role.PARAMETER or not r.initialized:
            continue
        key = r.tie_key
        if key in seen:
            continue
        seen.add(key)
        extra = r.extra
        total += extra["local_numel"] if extra is not None and "local_numel" in extra else r.numel
    return total


class _Found:
    """What the walk noticed beyond plain parameters: wrappers, kinds of sharding, quantization schemes."""

    __slots__ = ("schemes", "sharding", "wrappers")

    def __init__(self) -> None:
        self.wrappers: list[str] = []
        self.sharding: set[str] = set()
        self.schemes: set[str] = set()


_AUX_PARAM_NAMES: list[frozenset[str]] = []  # built once, on first use


def _aux_param_names() -> frozenset[str]:
    """Attribute names that mark a quantization scheme's bookkeeping (the file path's table,
    :func:`paramscope.quant_names.aux_parameter_names`), so a live module and its checkpoint agree on what is
    a parameter."""
    if not _AUX_PARAM_NAMES:
        from paramscope.quant_names import aux_parameter_names

        _AUX_PARAM_NAMES.append(aux_parameter_names())
    return _AUX_PARAM_NAMES[0]


_CLASS_FACTS: dict[type, tuple[str, bool, str | None]] = {}
"""Per module class, what the walk asks of it (:func:`_class_facts`): one dictionary look-up per module."""


def _class_facts(cls: type) -> tuple[str, bool, str | None]:
    """(class name as shown, whether an FSDP1 unit, the wrapped model's attribute if a wrapper) of a module class:
    the last along the MRO, since a subclass of DDP is DDP."""
    return sharding.module_type_name(cls), sharding.is_fsdp1_unit(cls), wrapper_child(cls)


def _collect(
    module: Any, uninitialized: type, parameter: type, found: _Found, source: str
) -> tuple[list[TensorRecord], dict[str, str], list[str], ModuleWalk | None]:
    """Records, module types by path, the names of uninitialized tensors, and the modules visited
    (:class:`~paramscope.records.ModuleWalk`, None where it would not match the names): one pass over the modules.

    Every module reachable from ``module`` is visited under every path it has (as
    ``named_modules(remove_duplicate=False)`` would), pre-order, cycles cut: a module met again is looked for
    among its own ancestors only then. A wrapper's child that holds the wrapped model (DDP's ``module``,
    ``torch.compile``'s ``_orig_mod``, FSDP1's ``_fsdp_wrapped_module``: :data:`~.sharding.WRAPPER_CHILD`,
    matched along the MRO) gets the wrapper's own path, so names read as in the unwrapped model; the wrappers'
    class names go to ``found.wrappers``.

    Ties are found as ``named_parameters(remove_duplicate=False)`` would show them, by identity (:func:`_identity`):
    a tensor seen once carries no tie key at all (so a model without ties is counted record by record, with no key
    per tensor); the first and every later record of a repeated one carry :func:`_tie_key`. The identities are
    listed as the records are made and looked at once at the end, in C (a set of them): only a model with a tie
    pays for a dictionary of them (measured: about 1.5 ms less of the 20,001-module model's 65 ms walk).
    Sizes are computed and checked here (:func:`_check_numel`), once.

    The walk hands on what it knows of the modules' structure (each visit's parent, where its records start), so
    the report need not parse it back out of the names; it does so only where that structure is exactly what the
    names say: every path seen once (no wrapper's child sharing its path), no name with a dot in it (torch
    refuses one, a module's dictionaries written by hand do not), no record made by :func:`_special` (FSDP1's flat
    parameter and a quantized weight's side tables are named for other modules).
    """
    records: list[TensorRecord] = []
    append = records.append
    module_types: dict[str, str] = {}
    lazy: list[str] = []
    flat: dict[tuple[int, str], Any] = {}
    identities: list[Hashable] = []  # per record, its identity (a record made by _special: a unique stand-in)
    identify = identities.append
    class_facts = _CLASS_FACTS
    aux_params = _aux_param_names()
    aux_buffers = sharding.QUANT_AUX_BUFFERS | aux_params
    wrappers = found.wrappers
    PARAMETER, BUFFER = Role.PARAMETER, Role.BUFFER
    dtype_facts = _DTYPE_FACTS
    new = TensorRecord.__new__
    prod = math.prod
    # shape -> (that tuple, its product, whether it is (0,))
    shapes: dict[tuple[int, ...], tuple[tuple[int, ...], int, bool]] = {}
    visited: set[int] = set()
    parents: list[int] = []  # per visit, the visit of its parent (the root: -1)
    starts: list[int] = []  # per visit, the index of its first record
    named = True  # whether the names say what parents and starts say (see above)
    stack: list[tuple[str, Any, tuple | None, int]] = [("", module, None, -1)]
    pop, push = stack.pop, stack.append

    while stack:
        path, sub, chain, parent = pop()
        state = sub.__dict__
        try:  # from the instance's dict: one attribute read, not three through nn.Module's __getattr__ hook
            # (measured: about 1.6 ms less over the 20,001 modules of bench/bench_live.py)
            parameters, buffers, children = state["_parameters"], state["_buffers"], state["_modules"]
        except KeyError:  # a module whose Module.__init__ did not run: whatever attribute access says
            parameters, buffers, children = sub._parameters, sub._buffers, sub._modules
        if children:  # only a module with children can contain itself: a leaf is never looked for among ancestors
            sub_id = id(sub)
            if sub_id in visited:
                if _is_ancestor(sub_id, chain):
                    continue  # a cycle: the module contains itself
            else:
                visited.add(sub_id)
        visit = len(starts)
        start = len(records)
        starts.append(start)
        parents.append(parent)
        cls = type(sub)
        facts = class_facts.get(cls)
        if facts is None:
            facts = class_facts[cls] = _class_facts(cls)
        owner, fsdp1_unit, transparent = facts
        if fsdp1_unit:  # the walk is pre-order: a unit comes before the modules it shards
            flat.update(sharding.flat_index([sub]))
        module_types[path] = owner
        prefix = path + "." if path else ""
        scales = False  # a parameter or buffer here is named like a quantization scale
        if parameters:
            for key, param in parameters.items():
                if param is None:
                    continue
                if "." in key:
                    named = False
                full = prefix + key
                plain = type(param) is parameter  # an UninitializedParameter is a subclass: never plain
                if not plain and isinstance(param, uninitialized):
                    lazy.append(full)
                    identify(id(param))
                    append(TensorRecord(full, None, _dtype_name(param), PARAMETER, param.requires_grad, None, owner,
                                        origin="live"))
                    continue
                scales = scales or key in aux_params
                # one tuple and one product per distinct shape: fewer objects for the GC to walk, fewer products.
                # A plain Parameter's shape is a torch.Size, which hashes and compares as its tuple: looked up as it
                # is (a subclass's shape may be anything: made a tuple first)
                known_shape = shapes.get(param.shape) if plain else None
                if known_shape is None:
                    shape = tuple(param.shape)
                    known_shape = shapes.get(shape)
                    if known_shape is None:
                        known_shape = shapes[shape] = (shape, prod(shape), shape == (0,))
                shape, numel, emptied = known_shape
                # Only these can be special: a tensor subclass, a module under FSDP1, or ZeRO-3's emptied data.
                if not plain or flat or emptied:
                    try:
                        special = _special(prefix, key, sub, param, owner, flat, found)
                    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:
                        # a framework's metadata that does not say what its documentation says: one line, named
                        raise ParamscopeError(full, f"unreadable sharding/quantization metadata: {exc}") from exc
                    if special is not None:
                        named = False
                        for r in special:
                            _check_numel(source, r.name, r.shape, r.numel)
                        records.extend(special)
                        # their ties are their own (a flat parameter's originals, ZeRO-3's ds_id): stand-ins that
                        # tie to nothing (each record's address, distinct from any live tensor's)
                        identities.extend(map(id, special))
                        continue
                dtype = param.dtype
                known = dtype_facts.get(dtype)
                if known is None:
                    name = _dtype_name(param)
                    known = dtype_facts[dtype] = (name, _itemsize(name))
                dtype_name, size = known
                record = new(TensorRecord)
                record.name = full
                record.shape = shape
                record.dtype = dtype_name
                record.role = PARAMETER
                record.trainable = param.requires_grad
                record.owner_type = owner
                record.origin = "live"
                record.persistent = record.quant = record.extra = record.tie = None
                identify(_tie_key(param) if not param.is_meta else id(param))  # _identity, inlined: it is hot
                if numel > INT64_MAX:  # a plain Parameter's sizes are torch's own, which refuses a negative one
                    _check_numel(source, full, shape, numel)
                record._numel, record._nbytes = numel, numel * size if size else False  # False: computed on use
                append(record)
        params_end = len(records)
        if scales and _quantized(records[start:params_end]):
            # FP8Linear's weight_scale_inv, FbgemmFp8Linear's weight_scale are nn.Parameters: bookkeeping all the same
            for i in range(start, params_end):
                r = records[i]
                if r.role is PARAMETER and r.quant is None and r.name.rpartition(".")[2] in aux_params:
                    records[i] = r.replace(role=Role.QUANT_AUX)
        if buffers:
            non_persistent = sub._non_persistent_buffers_set
            for key, buf in buffers.items():
                if buf is None:
                    continue
                if "." in key:
                    named = False
                full = prefix + key
                shape = None if isinstance(buf, uninitialized) else tuple(buf.shape)
                role = BUFFER
                if key in aux_buffers and _quantized(records[start:params_end]):
                    role = Role.QUANT_AUX  # a scale beside a quantized weight: bookkeeping, not state
                    scales = True
                if shape is None:
                    lazy.append(full)
                    identify(id(buf))
                else:
                    _check_numel(source, full, shape, prod(shape))
                    identify(_identity(buf))
                append(TensorRecord(full, shape, _dtype_name(buf), role, False, None, owner,
                                    persistent=key not in non_persistent, origin="live"))
        if scales:
            records[start:params_end] = _mark_scaled(records[start:params_end], found)
        if children:
            here = (sub_id, chain)
            if transparent is None:  # the common module: each child under its own name
                for name, child in reversed(children.items()):
                    if child is not None:
                        if "." in name:
                            named = False
                        push((prefix + name, child, here, visit))
            else:
                wrappers.append(cls.__name__)
                for name, child in reversed(children.items()):
                    if child is not None:
                        if "." in name:
                            named = False
                        push((path if name == transparent else prefix + name, child, here, visit))
    if len(set(identities)) != len(identities):  # a tensor under two names: tie its records
        first: dict[Hashable, int] = {}  # identity -> index of its first record
        for index, identity in enumerate(identities):
            j = first.setdefault(identity, index)
            if j != index:
                # made by this walk a moment ago, not yet shared: set in place
                tie = ("object", identity) if type(identity) is int else identity  # a meta/uninitialized tensor
                records[index].tie = tie
                if records[j].tie is None:
                    records[j].tie = tie
    walk = None
    if named and len(module_types) == len(starts):  # each path once: the wrapped model's visit shares none
        starts.append(len(records))
        walk = ModuleWalk(list(module_types), parents, starts)
    return records, module_types, lazy, walk


_HOLDINGS = (("_parameters", "a parameter", "a tensor"), ("_buffers", "a buffer", "a tensor"),
             ("_modules", "a submodule", "a torch.nn.Module"))
"""What ``nn.Module`` keeps of its own: (the dict, what one entry is, what its value must be)."""


def _malformed(module: Any, torch: Any, limit: int = 1_000_000) -> str | None:
    """What breaks ``nn.Module``'s own layout in ``module`` or below (a dict that is not one, a key that is not a
    string, a value that is neither None nor a tensor / module), said in words; None if nothing does. The walk
    (:func:`_collect`) assumes that layout, as ``named_parameters()`` does; this is looked at only when it failed.
    Each module once, at most ``limit`` of them."""
    stack: list[tuple[str, Any]] = [("", module)]
    seen: set[int] = set()
    while stack and len(seen) < limit:
        path, sub = stack.pop()
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        where = f"module {path!r}" if path else "the root module"
        for attribute, entry, kind in _HOLDINGS:
            held = getattr(sub, "__dict__", {}).get(attribute)
            if held is None:
                return f"{where} has no {attribute} (its nn.Module.__init__ did not run)"
            if not isinstance(held, dict):
                return f"{where}'s {attribute} is of type {type(held).__name__}, not the dict nn.Module keeps"
            for key, value in held.items():
                if not isinstance(key, str):
                    return f"{where} holds {entry} under a key of type {type(key).__name__}, not a string"
                wanted = torch.nn.Module if attribute == "_modules" else torch.Tensor
                if value is not None and not isinstance(value, wanted):
                    return f"{where} holds {entry} {key!r} of type {type(value).__name__}, not {kind}"
                if attribute == "_modules" and value is not None:
                    stack.append((f"{path}.{key}" if path else key, value))
    return None


def _quantized(params: list[TensorRecord]) -> bool:
    """Whether a module's own parameters include a quantized or low-precision (float8, int8) weight."""
    return any(
        r.role is Role.PARAMETER and (r.quant is not None or r.dtype in sharding.LOW_PRECISION_DTYPES) for r in params
    )


def _mark_scaled(params: list[TensorRecord], found: _Found) -> list[TensorRecord]:
    """A float8/int8 weight beside its scales stands for one weight per element: ``params`` with each such
    record replaced by one that says which scheme it is."""
    out = []
    for r in params:
        scheme = sharding.SCALED_WEIGHT_SCHEMES.get(r.dtype)
        if scheme is not None and r.role is Role.PARAMETER and r.quant is None and r.shape is not None:
            r = r.replace(quant=QuantInfo(scheme, r.stored_numel, 8))
            found.schemes.add(scheme)
        out.append(r)
    return out


def _side_records(
    name: str, tables: list[tuple[str, Any]], owner: str
) -> list[TensorRecord]:
    """QUANT_AUX records for a quantized weight's side tables (held as attributes, not module tensors), so
    storage bytes include them: ``<name>`` is where the file path would name them (``0.weight.absmax``, ``0.SCB``)."""
    return [
        TensorRecord(f"{name}{table}", tuple(t.shape), _dtype_name(t), Role.QUANT_AUX, False, _tie_key(t), owner,
                     persistent=True, origin="live")
        for table, t in tables
    ]


def _restore_bnb4(record: TensorRecord, module: Any, key: str, found: _Found) -> list[TensorRecord]:
    """A sharded (FSDP1 view, FSDP2 DTensor) bitsandbytes 4-bit weight: the packed data lost its ``quant_state``,
    the module kept it (:func:`~paramscope.sources.sharding.module_quant_state`). Returns the record replaced by
    one with its logical count (this rank's share scaled the same way), then the side tables' records; for any
    other parameter, the record alone."""
    state = sharding.module_quant_state(module, key)
    if state is None or record.quant is not None:
        return [record]
    logical, scheme, state = sharding.bnb4_logical(state)
    stored = record.stored_numel
    extra = record.extra
    if extra is not None and "local_numel" in extra and stored:
        extra = {**extra, "local_numel": extra["local_numel"] * logical // stored}  # stored -> weights they hold
    record = record.replace(quant=QuantInfo(scheme, logical, sharding.BNB4_BITS), extra=extra)
    found.schemes.add(scheme)
    return [record, *_side_records(record.name + ".", sharding.bnb4_side_tables(state), record.owner_type or "")]


def _special(
    prefix: str, key: str, sub: Any, param: Any, owner: str, flat: dict[tuple[int, str], Any], found: _Found
) -> list[TensorRecord] | None:
    """Records for a parameter that is not what it looks like (see :mod:`.sharding`), or None for a plain one."""
    full = prefix + key
    attrs = param.__dict__
    dtype = _dtype_name(param)
    trainable = param.requires_grad
    if attrs.get("_is_flat_param"):  # FSDP1 use_orig_params=False: one record per original parameter
        found.sharding.add("fsdp1-flat")
        out = []
        for name, original, owner_type, module, attr in sharding.flat_names(param):
            record = TensorRecord(prefix + name, original.shape, dtype, Role.PARAMETER, trainable, original.tie,
                                  owner_type, origin="live", extra={"local_numel": original.local_numel})
            out.extend(_restore_bnb4(record, module, attr, found))
        return out
    original = flat.get((id(sub), key)) if flat else None
    if original is not None:  # FSDP1 use_orig_params=True: a 1-D view of this rank's slice
        found.sharding.add("fsdp1-orig")
        # this rank's share from the flat parameter's shard metadata, not param.numel(): while the unit is
        # unsharded (summon_full_params, SHARD_GRAD_OP after forward) the view is the whole tensor
        record = TensorRecord(full, original.shape, dtype, Role.PARAMETER, trainable, original.tie, owner,
                              origin="live", extra={"local_numel": original.local_numel})
        return _restore_bnb4(record, sub, key, found)
    if "ds_numel" in attrs and "ds_shape" in attrs:  # DeepSpeed ZeRO-3: param.data is empty
        found.sharding.add("zero3")
        shape, _local, extra = sharding.zero3_facts(param)
        ds_id = attrs.get("ds_id")
        tie = ("zero3", ds_id) if ds_id is not None else ("object", id(param))
        return [TensorRecord(full, shape, dtype, Role.PARAMETER, trainable, tie, owner, origin="live", extra=extra)]
    kind = sharding.tensor_kind(type(param))
    if kind == "dtensor":
        found.sharding.add("dtensor")
        shape, _local, extra = sharding.dtensor_facts(param)
        record = TensorRecord(full, shape, dtype, Role.PARAMETER, trainable, ("object", id(param)), owner,
                              origin="live", extra=extra)
        return _restore_bnb4(record, sub, key, found)
    if kind == "bnb4":
        facts = sharding.bnb4_facts(param)
        if facts is None:
            state = sharding.module_quant_state(sub, key)
            if state is None or not getattr(param, "bnb_quantized", True):
                return None
            facts = sharding.bnb4_logical(state)  # the parameter lost its state; the module kept it
        logical, scheme, state = facts
        found.schemes.add(scheme)
        return [
            TensorRecord(full, tuple(param.shape), dtype, Role.PARAMETER, trainable, _tie_key(param), owner,
                         quant=QuantInfo(scheme, logical, sharding.BNB4_BITS), origin="live"),
            *_side_records(full + ".", sharding.bnb4_side_tables(state), owner),
        ]
    if kind == "bnb8":
        if dtype != "int8":  # not quantized yet (still holds float weights)
            return None
        found.schemes.add("bitsandbytes-int8")
        shape = tuple(param.shape)
        numel = 1
        for d in shape:
            numel *= d
        tables = [(n, t) for n, t in sharding.bnb8_side_tables(param) if n not in sub._buffers]
        return [
            TensorRecord(full, shape, dtype, Role.PARAMETER, trainable, _tie_key(param), owner,
                         quant=QuantInfo("bitsandbytes-int8", numel, sharding.BNB8_BITS), origin="live"),
            *_side_records(prefix, tables, owner),
        ]
    if kind == "subclass":
        facts = sharding.subclass_facts(param)
        if facts is None:
            return None
        logical, stored, extra = facts
        scheme = f"torchao:{type(param).__name__}"
        found.schemes.add(scheme)
        bits = extra.pop("bits")
        # stored as one byte blob: the inner tensors (data, scales, zero points) differ in dtype
        return [TensorRecord(full, (stored,), "uint8", Role.PARAMETER, trainable, ("object", id(param)), owner,
                             quant=QuantInfo(scheme, logical, bits), origin="live", extra=extra)]
    return None


def _has_uninitialized(module: Any, mixin: type) -> bool:
    return any(isinstance(t, mixin) for t in (*module.parameters(), *module.buffers()))


def dry_run_on_meta(module: Any, example_input: Any, *, source: str) -> Any:
    """A copy of ``module`` on the meta device with its lazy modules materialised by one forward pass."""
    torch = _import_torch(source)
    from torch.nn import Parameter
    from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

    # Pre-seed deepcopy's memo so no tensor data is copied: each tensor maps to a meta stand-in.
    memo: dict[int, Any] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        if isinstance(tensor, UninitializedParameter):
            stand_in = UninitializedParameter(tensor.requires_grad, device="meta", dtype=tensor.dtype)
        elif isinstance(tensor, UninitializedBuffer):
            stand_in = UninitializedBuffer(tensor.requires_grad, device="meta", dtype=tensor.dtype)
        elif isinstance(tensor, Parameter):
            stand_in = Parameter(tensor.detach().to("meta"), tensor.requires_grad)
        else:
            stand_in = tensor.detach().to("meta")
        memo[id(tensor)] = stand_in
    clone = copy.deepcopy(module, memo)

    inputs = example_input
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(d, int) for d in inputs):
        inputs = torch.empty(tuple(inputs), device="meta")
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    inputs = tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
    try:
        with torch.no_grad():
            clone(*inputs)
    except Exception as exc:  # the user's forward failed on this input: say so, in one line
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs if isinstance(x, torch.Tensor))
        raise ParamscopeError(source, f"dry run with input {shapes} failed: {type(exc).__name__}: {exc}") from exc
    return clone


def parse_shape(text: str) -> tuple[int, ...]:
    """``'1,3,32,32'`` (or ``'1x3x32x32'``) -> ``(1, 3, 32, 32)``."""
    inner = text.replace(" ", "").strip("()[]")
    if inner.endswith(","):  # a Python 1-tuple, '(8,)'
        inner = inner[:-1]
    parts = re.split("[,x]", inner)
    # every part a number: '1,3,x' or '1,,3' is a mistake to name, not a shorter shape to run
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"input shape must be comma-separated integers, got {text!r}")
    dims = tuple(int(p) for p in parts)
    if not dims or any(d < 0 for d in dims):
        raise ValueError(f"input shape must be non-negative integers, got {text!r}")
    return dims


def _import_torch(source: str) -> Any:
    from paramscope.errors import require

    return require("torch", extra="torch", source=source, purpose="inspecting a PyTorch module")
