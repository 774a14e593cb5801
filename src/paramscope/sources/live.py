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
from collections.abc import Hashable, Iterator
from typing import Any

from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import Inventory, Role, TensorRecord


def _walk(root: Any) -> Iterator[tuple[str, Any]]:
    """(path, module) for every module reachable from ``root``, under every path; cycles cut."""
    stack: list[tuple[str, Any, bool]] = [("", root, False)]
    active: set[int] = set()  # modules on the current path from the root: re-entering one is a cycle
    while stack:
        path, module, leaving = stack.pop()
        if leaving:
            active.discard(id(module))
            continue
        if id(module) in active:
            continue
        active.add(id(module))
        yield path, module
        stack.append((path, module, True))
        children = [(name, child) for name, child in module._modules.items() if child is not None]
        prefix = path + "." if path else ""
        for name, child in reversed(children):
            stack.append((prefix + name, child, False))


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(tensor: Any) -> str:
    dtype = tensor.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


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

    with paused_gc():
        records, module_types, lazy = _collect(module, UninitializedTensorMixin)
    notes = []
    if lazy:
        notes.append(
            f"{len(lazy)} tensors of lazy modules are uninitialized and not counted; "
            "give an input shape (--input-shape / example_input=) to materialise them on the meta device"
        )
    return Inventory(name, "torch.nn.Module", records, module_types, notes=notes)


def _collect(module: Any, uninitialized: type) -> tuple[list[TensorRecord], dict[str, str], list[str]]:
    """Records, module types by path, and the names of uninitialized tensors."""
    records: list[TensorRecord] = []
    module_types: dict[str, str] = {}
    lazy: list[str] = []
    for path, sub in _walk(module):
        owner = type(sub).__name__
        module_types[path] = owner
        prefix = path + "." if path else ""
        for key, param in sub._parameters.items():
            if param is None:
                continue
            full = prefix + key
            if isinstance(param, uninitialized):
                lazy.append(full)
                records.append(
                    TensorRecord(full, None, _dtype_name(param), Role.PARAMETER, param.requires_grad,
                                 ("object", id(param)), owner, origin="live")
                )
                continue
            records.append(
                TensorRecord(full, tuple(param.shape), _dtype_name(param), Role.PARAMETER,
                             param.requires_grad, _tie_key(param), owner, origin="live")
            )
        non_persistent = sub._non_persistent_buffers_set
        for key, buf in sub._buffers.items():
            if buf is None:
                continue
            full = prefix + key
            shape = None if isinstance(buf, uninitialized) else tuple(buf.shape)
            if shape is None:
                lazy.append(full)
            records.append(
                TensorRecord(full, shape, _dtype_name(buf), Role.BUFFER, False,
                             ("object", id(buf)) if shape is None else _tie_key(buf), owner,
                             persistent=key not in non_persistent, origin="live")
            )
    return records, module_types, lazy


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
    parts = text.replace("x", ",").replace(" ", "").strip("()[]").split(",")
    try:
        dims = tuple(int(p) for p in parts if p)
    except ValueError:
        raise ValueError(f"input shape must be comma-separated integers, got {text!r}") from None
    if not dims or any(d < 0 for d in dims):
        raise ValueError(f"input shape must be non-negative integers, got {text!r}")
    return dims


def _import_torch(source: str) -> Any:
    from paramscope.errors import require

    return require("torch", extra="torch", source=source, purpose="inspecting a PyTorch module")
