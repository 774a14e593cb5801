"""Reader: Keras ``.keras`` archives and HDF5 weight files (``.weights.h5``, legacy ``.h5``), via h5py.

A ``.keras`` file is a zip holding ``config.json``, ``metadata.json`` and ``model.weights.h5``. The
weights member is normally stored uncompressed; h5py then reads it through a bounded window onto the
archive (nothing is extracted or written). A deflated member is read through ``zipfile``'s stream,
after refusing compression ratios only a deflate bomb has.

Only HDF5 metadata is touched: every dataset's shape and dtype, found by an iterative walk that follows
hard links only (soft and external links are skipped; a cycle of hard links is cut), never its data,
and Keras itself is never imported. A dataset reachable under two names is one storage: a tie. Datasets under
a top-level ``optimizer`` (Keras 3) or ``optimizer_weights`` (Keras 2) group are optimizer state.

What each variable is, as Keras reports it. Keras 3 (keras/src/saving/saving_lib.py) saves a Sequential or
Functional model's layers, in the model's order, under ``layers/<name>``, where ``<name>`` is the snake-cased
class name made unique by a counter (``dense``, ``dense_1``, ... ``dense_10``: not the layer's own name), and a
layer's variables under ``vars/<i>``, its trainable variables first, then its non-trainable ones
(``Layer.save_own_variables``). So:

* a layer's non-trainable variables are the last of its ``vars``: BatchNormalization's ``moving_mean`` and
  ``moving_variance`` (its last 2), Normalization's ``adapt_mean``, ``adapt_variance`` and ``count`` (all 3)
  (:data:`NON_TRAINABLE_VARS`). They are buffers, as PyTorch counts running statistics; a legacy Keras 2 file
  names them (``moving_mean:0``). Keras's "non-trainable params" are these buffers plus the frozen parameters.
* an ``Embedding`` layer's ``vars/0`` is its ``embeddings`` table: marked with the class, so the
  non-embedding count leaves it out.
* with the archive's ``config.json`` (the model config), each ``layers/<name>`` group is matched to its
  layer entry by that same naming: its class, and ``trainable`` (a layer with ``"trainable": false``, or inside
  a model or layer that has it, holds frozen parameters; the others' are trainable). Without a config (a bare
  ``.weights.h5``) the class is read from the group's name and ``trainable`` stays None; so it does for a
  variable no config entry reaches (a custom layer's sublayers) unless a frozen layer holds it.
* a legacy Keras 2 ``.h5`` keeps the model config in its root ``model_config`` attribute and each layer's
  weights under ``model_weights/<layer name>/``: its top-level layers' ``trainable`` and order come from there.
* tensors are listed in the config's layer order, and otherwise in natural order of their names (``dense_2``
  before ``dense_10``, ``vars/2`` before ``vars/10``), not HDF5's byte order.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

from paramscope.errors import ParamscopeError, require
from paramscope.records import Inventory, Role, TensorRecord, role_for_file_tensor
from paramscope.sources.files import NameBudget, Reader, open_regular, open_zip, probe_zip
from paramscope.sources.numpy_files import NUMERIC

TYPE_CHECKING = False
if TYPE_CHECKING:
    import zipfile

FORMAT = "keras"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
WEIGHTS_MEMBER = "model.weights.h5"
MAX_JSON_MEMBER = 64 * 1024 * 1024
MAX_OBJECTS = 200_000
MAX_DEPTH = 64
"""Group nesting paramscope follows: Keras nests a few levels (layers/<name>/vars); thousands is hostile."""
MAX_RATIO = 200
"""Weights compress by a few percent at best; a member inflating more than this is a bomb."""
OPTIMIZER_GROUPS = frozenset({"optimizer", "optimizer_weights"})
NON_TRAINABLE_VARS = {"BatchNormalization": 2, "Normalization": 3}
"""Layer class -> how many of its last ``vars`` are non-trainable state (keras/src/layers: batch_normalization.py
adds moving_mean and moving_variance with trainable=False, after gamma and beta; preprocessing/normalization.py
adds adapt_mean, adapt_variance and count, all non-trainable)."""
LEGACY_STATE = frozenset({"moving_mean:0", "moving_variance:0"})
"""Keras 2 ``.h5`` variable names of BatchNormalization's running statistics."""
EMBEDDING_CLASSES = frozenset({"Embedding"})
SNAKE_CLASSES = {"batch_normalization": "BatchNormalization", "normalization": "Normalization",
                 "embedding": "Embedding"}
"""A Keras 3 layer group's name (less its ``_<n>`` counter) -> the class it was named from: for files without a
config."""
MAX_CONFIG_LAYERS = 100_000

# HDF5 datasets have numpy dtypes: the same (kind, itemsize) table as .npy headers.


# --------------------------------------------------------------------------------------------- detection


def probe(head: bytes, path: Path) -> Reader | None:
    """The HDF5 signature; or a zip holding ``model.weights.h5`` (or ``config.json`` and an ``.h5``), whose
    archive, opened here, is what the Reader reads."""
    if head.startswith(HDF5_MAGIC):
        return Reader(_read_hdf5, path)
    if not head.startswith(b"PK"):
        return None
    archive = probe_zip(path, ".keras")
    if archive is None:
        return Reader(_read_archive, path) if path.suffix == ".keras" else None  # damaged: read() says what
    if _weights_member(archive.namelist()) is not None:
        return Reader(_read_archive, path, archive)
    archive.close()
    return None


def _weights_member(names: list[str]) -> str | None:
    if WEIGHTS_MEMBER in names:
        return WEIGHTS_MEMBER
    if "config.json" in names:
        h5 = [n for n in names if n.endswith(".h5") and "/" not in n]
        if len(h5) == 1:
            return h5[0]
    return None


# --------------------------------------------------------------------------------------------- reading


def read(path: Path) -> Inventory:
    try:
        with open_regular(path) as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"PK"):
        return _read_archive(path)
    if not head.startswith(HDF5_MAGIC):
        raise ParamscopeError(path, "not an HDF5 file (bad signature)")
    return _read_hdf5(path)


def _read_hdf5(path: Path) -> Inventory:
    h5py = _h5py(path)
    try:  # through a checked handle, not by name: a FIFO swapped in since the probe would block HDF5's open
        with open_regular(path) as handle, h5py.File(handle, "r") as h5:
            records, notes = _walk(path, h5, path.name, os.fstat(handle.fileno()).st_size)
            metadata = _root_attributes(h5)
            legacy = _legacy_layers(h5)
        records = _as_keras_reports(records, legacy, legacy=True) if legacy else _as_keras_reports(records, None)
    except ParamscopeError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ParamscopeError(path, f"damaged HDF5 file: {_one_line(exc)}") from None
    return Inventory(source=str(path), format=FORMAT, tensors=records, metadata=metadata, notes=notes)


def _h5py(path: Path) -> Any:
    return require("h5py", extra="keras", source=path, purpose="reading Keras HDF5 weights")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _root_attributes(h5: Any) -> dict[str, Any]:
    """The few root attributes legacy Keras writes that are worth showing (never the model config)."""
    out: dict[str, Any] = {}
    for key in ("keras_version", "backend"):
        value = h5.attrs.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and len(value) < 200:
            out[key] = value
    return out


def _dtype_name(dtype: Any) -> str:
    canonical = NUMERIC.get((dtype.kind, dtype.itemsize))
    if canonical is not None:
        return canonical
    return f"numpy:{dtype.str}"


def _walk(where: Path | str, h5: Any, origin: str, size: int) -> tuple[list[TensorRecord], list[str]]:
    """Every dataset's record, depth-first in name order; hard links only, each object visited once
    per name, cycles cut by object identity. The walk keeps its own stack (no recursion), groups nested
    deeper than :data:`MAX_DEPTH` are refused, and names, joined from group paths, are bounded by a
    :class:`~paramscope.sources.files.NameBudget` for the ``size`` bytes of HDF5."""
    import h5py

    budget = NameBudget(where, size)
    found: list[tuple[str, Any, tuple[int, ...], str, Role]] = []
    visits: dict[Any, int] = {}
    skipped_links = 0
    empty = 0
    objects = 0
    stack: list[tuple[str, Any, frozenset[Any], str]] = [("", h5, frozenset({h5.id}), "")]
    while stack:
        prefix, group, ancestors, top_group = stack.pop()
        if len(ancestors) > MAX_DEPTH + 1:  # ancestors hold the root too
            raise ParamscopeError(where, f"HDF5 groups nested deeper than {MAX_DEPTH} levels")
        children = []
        for key in group:
            objects += 1
            if objects > MAX_OBJECTS:
                raise ParamscopeError(where, f"more than {MAX_OBJECTS:,} HDF5 objects")
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                skipped_links += 1
                continue
            children.append((key, group.get(key)))
        for key, obj in reversed(children):
            budget.spend(len(prefix) + 1 + len(key))
            name = f"{prefix}.{key}" if prefix else key
            top = top_group or key
            if isinstance(obj, h5py.Group):
                if obj.id in ancestors:
                    continue  # a hard link back up the tree
                stack.append((name, obj, ancestors | {obj.id}, top))
            elif isinstance(obj, h5py.Dataset):
                shape = obj.shape
                if shape is None:
                    empty += 1
                    continue
                dtype = _dtype_name(obj.dtype)
                role = Role.OPTIMIZER_STATE if top in OPTIMIZER_GROUPS else role_for_file_tensor(dtype)
                visits[obj.id] = visits.get(obj.id, 0) + 1
                found.append((name, obj.id, tuple(int(d) for d in shape), dtype, role))
    records = []
    for name, oid, shape, dtype, role in found:
        tie = ("hdf5", origin, hash(oid)) if visits[oid] > 1 else None
        records.append(TensorRecord(name=name, shape=shape, dtype=dtype, role=role, tie=tie, origin=origin))
    notes = []
    if skipped_links:
        notes.append(f"{skipped_links} soft or external HDF5 links were not followed.")
    if empty:
        notes.append(f"{empty} datasets with an empty (null) dataspace hold nothing and are not listed.")
    odd = sorted({r.dtype for r in records if r.dtype.startswith("numpy:")})
    if odd:
        notes.append(f"Datasets of non-numeric types ({', '.join(odd)}) are listed as buffers; bytes not counted.")
    return records, notes


# --------------------------------------------------------------------------------------------- .keras zip


class _Window(io.RawIOBase):
    """A read-only view of ``length`` bytes at ``start`` of an open file: a stored zip member."""

    def __init__(self, handle: Any, start: int, length: int) -> None:
        super().__init__()
        self._handle = handle
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._length)[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._length - self._pos))
        if count == 0:
            return 0
        self._handle.seek(self._start + self._pos)
        data = self._handle.read(count)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _read_archive(path: Path, archive: zipfile.ZipFile | None = None) -> Inventory:
    """A ``.keras`` zip, from ``archive`` when a probe opened it already (closed here either way)."""
    import zipfile

    with archive if archive is not None else open_zip(path, ".keras") as archive:
        names = archive.namelist()
        if len(names) != len(set(names)):
            raise ParamscopeError(path, "archive lists a member more than once")
        member = _weights_member(names)
        if member is None:
            raise ParamscopeError(path, f"archive has no {WEIGHTS_MEMBER}")
        metadata: dict[str, Any] = {}
        layers = None
        for json_name in ("metadata.json", "config.json"):
            if json_name in names:
                value = _json_member(path, archive, json_name)
                metadata.update(_summary(path, json_name, value))
                if json_name == "config.json":
                    layers = _config_layers(value)
        info = archive.getinfo(member)
        where = f"{path}[{member}]"
        if info.flag_bits & 0x1:
            raise ParamscopeError(where, "member is encrypted")
        h5py = _h5py(path)
        try:
            with open_regular(path) as handle:
                stream = _member_stream(where, archive, info, handle)
                try:
                    with h5py.File(stream, "r") as h5:
                        records, notes = _walk(where, h5, member, info.file_size)
                finally:
                    stream.close()
        except ParamscopeError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ParamscopeError(where, f"damaged HDF5 weights: {_one_line(exc)}") from None
    records = _as_keras_reports(records, layers)
    return Inventory(source=str(path), format=FORMAT, tensors=records, metadata=metadata, notes=notes)


def _member_stream(where: str, archive: Any, info: Any, handle: Any) -> Any:
    """A seekable stream over the weights member: a window onto a stored one, else zipfile's stream."""
    import zipfile

    size = os.fstat(handle.fileno()).st_size
    if info.compress_type == zipfile.ZIP_STORED:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ParamscopeError(where, "bad local file header")
        name_len, extra_len = struct.unpack_from("<HH", local, 26)
        start = info.header_offset + 30 + name_len + extra_len
        if info.file_size != info.compress_size or start + info.file_size > size:
            raise ParamscopeError(where, "stored member runs past the end of the archive")
        return _Window(handle, start, info.file_size)
    if info.file_size > MAX_RATIO * max(info.compress_size, 1) + (1 << 20):
        raise ParamscopeError(
            where,
            f"inflates {info.compress_size:,} bytes to {info.file_size:,}: a compression ratio only a "
            "deflate bomb has",
        )
    return archive.open(info)


def _json_member(path: Path, archive: Any, name: str) -> Any:
    """A small JSON member, read through a capped stream (the declared size may lie)."""
    import zipfile
    import zlib

    info = archive.getinfo(name)
    if info.file_size > MAX_JSON_MEMBER:
        raise ParamscopeError(path, f"{name} declares {info.file_size:,} bytes, more than {MAX_JSON_MEMBER:,}")
    try:
        with archive.open(info) as stream:
            raw = stream.read(MAX_JSON_MEMBER + 1)
    except (OSError, ValueError, EOFError, NotImplementedError, RuntimeError, zlib.error, zipfile.BadZipFile) as exc:
        raise ParamscopeError(path, f"cannot read {name}: {_one_line(exc)}") from None
    if len(raw) > MAX_JSON_MEMBER:
        raise ParamscopeError(path, f"{name} is larger than {MAX_JSON_MEMBER:,} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ParamscopeError(path, f"{name} is nested too deeply") from None
    except ValueError as exc:
        raise ParamscopeError(path, f"{name} is not valid JSON: {_one_line(exc)}") from None


def _summary(path: Path, name: str, value: Any) -> dict[str, Any]:
    """A few facts from metadata.json / config.json, shown as metadata; nothing in them is executed."""
    if not isinstance(value, dict):
        raise ParamscopeError(path, f"{name} is not a JSON object")
    out: dict[str, Any] = {}
    if name == "metadata.json":
        for key in ("keras_version", "date_saved"):
            if isinstance(value.get(key), str):
                out[key] = value[key]
    else:
        if isinstance(value.get("class_name"), str):
            out["model class"] = value["class_name"]
        config = value.get("config")
        if isinstance(config, dict) and isinstance(config.get("name"), str):
            out["model name"] = config["name"]
    return out


# --------------------------------------------------------------------------------------------- roles and order


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: the name a layer's class gives its weights group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _config_layers(config: Any) -> dict[str, tuple[int, str, bool]]:
    """The model config's layers by the weights group Keras 3 saves them under (dotted, as tensor names):
    ``layers.<snake class>[_<n>]`` -> (position among its siblings, class name, trainable: its own flag and its
    containers'). Nested Sequential/Functional models are followed (their layers sit under ``<group>.layers``);
    at most :data:`MAX_CONFIG_LAYERS` layers and :data:`MAX_DEPTH` levels (the JSON is untrusted)."""
    out: dict[str, tuple[int, str, bool]] = {}
    stack: list[tuple[str, Any, bool, int]] = [("layers", config, True, 0)]
    while stack:
        prefix, model, trainable, depth = stack.pop()
        inner = model.get("config") if isinstance(model, dict) else None
        if depth > MAX_DEPTH or not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
            continue
        trainable = trainable and inner.get("trainable") is not False
        used: dict[str, int] = {}
        position = 0
        for layer in inner["layers"]:
            if len(out) >= MAX_CONFIG_LAYERS:
                return out
            if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
                continue
            cls = layer["class_name"]
            if cls == "InputLayer":  # no variables; its own counter ("input_layer") touches no other class's
                continue
            base = _snake(cls)[:MAX_NAME]
            count = used[base] = used.get(base, -1) + 1  # saving_lib._get_unique_name
            path = f"{prefix}.{base}_{count}" if count else f"{prefix}.{base}"
            own = layer.get("config")
            frozen = isinstance(own, dict) and own.get("trainable") is False
            out[path] = (position, cls, trainable and not frozen)
            position += 1
            if isinstance(own, dict) and isinstance(own.get("layers"), list):
                stack.append((f"{path}.layers", layer, trainable, depth + 1))
    return out


MAX_NAME = 1024
_CHUNKS = re.compile(r"(\d+)")


def _natural(part: str) -> tuple[tuple[int, int | str], ...]:
    """A name part's natural sort key: runs of digits compare as numbers (``dense_2`` before ``dense_10``)."""
    return tuple((0, int(c)) if c.isdigit() else (1, c) for c in _CHUNKS.split(part[:MAX_NAME]) if c)


def _legacy_layers(h5: Any) -> dict[str, tuple[int, str, bool]]:
    """A Keras 2 ``.h5``'s layers from its root ``model_config`` attribute (the model config as JSON; weights
    under ``model_weights/<layer name>/``): ``model_weights.<layer name>`` -> (position, class, trainable). Top
    level layers only; {} when the attribute is missing, too large or not a model config."""
    try:
        raw = h5.attrs.get("model_config") if "model_config" in h5.attrs else None
    except (OSError, KeyError, ValueError, RuntimeError, TypeError):  # an attribute h5py cannot read: no config
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or len(raw) > MAX_JSON_MEMBER:
        return {}
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    inner = config.get("config") if isinstance(config, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
        return {}
    frozen_model = inner.get("trainable") is False
    out: dict[str, tuple[int, str, bool]] = {}
    for layer in inner["layers"][:MAX_CONFIG_LAYERS]:
        own = layer.get("config") if isinstance(layer, dict) else None
        if isinstance(own, dict) and isinstance(own.get("name"), str) and isinstance(layer.get("class_name"), str):
            trainable = not frozen_model and own.get("trainable") is not False
            out.setdefault(f"model_weights.{own['name'][:MAX_NAME]}", (len(out), layer["class_name"], trainable))
    return out


def _as_keras_reports(records: list[TensorRecord], layers: dict[str, tuple[int, str, bool]] | None,
                      legacy: bool = False) -> list[TensorRecord]:
    """Roles, trainability, embedding tables and order as the module docstring says. ``legacy``: ``layers``
    come from a Keras 2 file's model config, whose layer groups name each variable, BatchNormalization's
    statistics included, so a layer's flag is every one of its parameters' flag."""
    layer_of: dict[int, str] = {}  # record index -> its layer group, for records directly under <group>.vars.<i>
    counts: dict[str, int] = {}
    for index, r in enumerate(records):
        group, _, leaf = r.name.rpartition(".")
        layer, _, vars_ = group.rpartition(".")
        if vars_ == "vars" and leaf.isdigit():
            layer_of[index] = layer
            counts[layer] = counts.get(layer, 0) + 1
    out = []
    for index, r in enumerate(records):
        if r.role is Role.OPTIMIZER_STATE:
            out.append(r)
            continue
        changes: dict[str, Any] = {}
        layer = layer_of.get(index)
        known = layers.get(layer) if layers is not None and layer is not None else None
        cls = known[1] if known is not None else _class_from_group(layer)
        if layer is not None and cls is not None:
            i = int(r.name.rpartition(".")[2])
            if i >= counts[layer] - NON_TRAINABLE_VARS.get(cls, 0):
                changes["role"] = Role.BUFFER
            elif cls in EMBEDDING_CLASSES and i == 0:
                changes["owner_type"] = cls
        elif r.name.rpartition(".")[2] in LEGACY_STATE:
            changes["role"] = Role.BUFFER
        elif r.name.endswith(".embeddings:0"):
            changes["owner_type"] = "Embedding"
        if layers is not None and changes.get("role", r.role) is Role.PARAMETER:
            trainable = known[2] if known is not None else _held_by(r.name, layers, legacy)
            if trainable is not None:
                changes["trainable"] = trainable
        out.append(r.replace(**changes) if changes else r)
    return sorted(out, key=lambda r: _order(r.name, layers))


def _class_from_group(layer: str | None) -> str | None:
    """The class a Keras 3 ``layers.<snake class>[_<n>]`` group was named from, where :data:`SNAKE_CLASSES` knows it."""
    if layer is None:
        return None
    parent, _, name = layer.rpartition(".")
    if parent.rpartition(".")[2] != "layers":
        return None
    return SNAKE_CLASSES.get(re.sub(r"_\d+$", "", name))


def _held_by(name: str, layers: dict[str, tuple[int, str, bool]], legacy: bool) -> bool | None:
    """False when a frozen layer of the config holds ``name`` (its sublayers are frozen too); the holding layer's
    flag in a ``legacy`` file; else None (a Keras 3 custom layer's sublayer may hold state of its own)."""
    prefix = name
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        known = layers.get(prefix)
        if known is not None:
            return known[2] if legacy or known[2] is False else None
    return None


def _order(name: str, layers: dict[str, tuple[int, str, bool]] | None) -> tuple[Any, ...]:
    """A tensor's place: each part of its name by its layer's position in the config where the config names
    that group, else in natural order."""
    key: list[Any] = []
    prefix = ""
    for part in name.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        known = layers.get(prefix) if layers is not None else None
        key.append((0, known[0]) if known is not None else (1, _natural(part)))
    return tuple(key)
