"""Would loading this checkpoint run code? A verdict per file, and per model (its files and its config).

The verdict is an **allow-list** answer, never a malware scan: a pickle is ``safe`` only when every global
it names is one of the few that paramscope's own pickle machine admits (tensor rebuild functions, storage
and dtype names, ``OrderedDict``, ``set``, ... :data:`paramscope.sources.pickle_reader.TORCH_GLOBALS`).
Anything else is listed by name, however harmless it may be (``argparse.Namespace``) or not (``os.system``).

Verdicts, from least to most serious (a model's verdict is the most serious of its files'):

* ``safe``: tensors and plain containers only. Safetensors, GGUF, NumPy ``.npy``/``.npz`` (read as
  ``np.load(allow_pickle=False)`` would: object arrays are refused), ONNX and Keras HDF5 are safe by
  construction (their formats hold no code, so a damaged one is still safe: the damage is the read's error,
  reported apart); a pickle (``torch.save``) is safe when the allow-list admits it.
* ``unreadable``: no verdict could be reached (not a checkpoint, a pickle or zip cut short, over paramscope's
  limits).
* ``needs-trust``: the pickle names globals outside the allow-list; each is listed, and for each whether
  ``torch.load(weights_only=True)`` (torch's own default allow-list, :data:`TORCH_WEIGHTS_ONLY`, a static
  table of ``torch._weights_only_unpickler._get_allowed_globals``) would refuse it too.
* ``code``: the checkpoint is a program: a TorchScript archive (``code/`` or ``constants.pkl`` in the zip),
  or a ``config.json`` whose ``auto_map`` asks transformers to run the repository's own Python
  (``trust_remote_code``).

Nothing is executed and nothing is imported to reach a verdict: the refused globals are collected by
running the same restricted pickle machine with a table that answers every unknown name with an inert
stand-in (:class:`_Collecting`), so the run goes on and finds them all.
"""

from __future__ import annotations

import json
import os
from collections import namedtuple
from functools import cache

from paramscope.errors import ParamscopeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

SAFE, UNREADABLE, NEEDS_TRUST, CODE = "safe", "unreadable", "needs-trust", "code"
SEVERITY = {SAFE: 0, UNREADABLE: 1, NEEDS_TRUST: 2, CODE: 3}
"""How serious a verdict is: a model's verdict is its most serious file's."""

MAX_LISTED = 50
"""Refused globals kept per file (a hostile pickle may name a million; the first ones say enough)."""

SAFE_FORMATS = {
    "safetensors": "safetensors holds a JSON header and raw tensor bytes: no code by construction",
    "gguf": "GGUF holds typed key/values and raw tensor bytes: no code by construction",
    "numpy": "NumPy .npy/.npz read without pickle (allow_pickle=False): no code by construction",
    "onnx": "ONNX is a protobuf graph of operators: nothing in it is executed by loading it",
    "keras": "Keras HDF5 weights are datasets: no code by construction",
}
"""Formats that cannot carry code, by the reader that claims the file (paramscope.sources.files.READERS)."""
PICKLE_SAFE = "pickle of tensors and plain containers only (allow-list)"
_SAFE_READERS = {"safetensors": "safetensors", "gguf": "gguf", "numpy_files": "numpy", "onnx": "onnx",
                 "keras": "keras"}


@cache  # made on first use: the pickle reader's tables are not imported by reading a safetensors file
def _weights_only_table() -> frozenset[str]:
    """torch 2.x ``torch._weights_only_unpickler._get_allowed_globals()``, written out (tests compare the two):
    what ``torch.load(weights_only=True)`` admits before any ``add_safe_globals``."""
    names = {
        "collections.OrderedDict", "collections.Counter", "torch.nn.parameter.Parameter",
        "torch.serialization._get_layout", "torch.Size", "torch.Tensor", "torch.device", "_codecs.encode",
        "builtins.bytearray", "builtins.set", "builtins.complex", "torch._tensor._rebuild_from_type_v2",
        "torch.storage.TypedStorage", "torch.storage.UntypedStorage",
    }
    from paramscope.sources.pickle_reader import TORCH_DTYPES

    names.update(f"torch.{dtype}" for dtype in TORCH_DTYPES)
    names.update(f"torch.{q}" for q in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
                                        "per_channel_symmetric", "per_channel_affine_float_qparams"))
    names.update(f"torch._utils.{f}" for f in (
        "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_tensor",
        "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_sparse_tensor", "_rebuild_meta_tensor_no_storage",
        "_rebuild_nested_tensor", "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy",
        "_rebuild_device_tensor_from_cpu_tensor"))
    dense = ("BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
    for module in ("torch", "torch.cuda"):
        names.update(f"{module}.{kind}Tensor" for kind in dense)
        names.update(f"{module}.{kind}Storage" for kind in (*dense, "ComplexDouble", "ComplexFloat"))
    names.update(f"torch.{kind}Storage" for kind in ("QInt32", "QInt8", "QUInt2x4", "QUInt4x2", "QUInt8"))
    sparse = ("BFloat16", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short")
    for module in ("torch.sparse", "torch.cuda.sparse"):
        names.update(f"{module}.{kind}Tensor" for kind in sparse)
    return frozenset(names)


def __getattr__(name: str) -> Any:
    """``TORCH_WEIGHTS_ONLY``: :func:`_weights_only_table`, made when first asked for."""
    if name == "TORCH_WEIGHTS_ONLY":
        return _weights_only_table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Verdict(namedtuple("Verdict", "verdict reason imports torch_refuses", defaults=((), ()))):
    """One file's (or model's) verdict. ``imports``: globals outside the allow-list, in the order met;
    ``torch_refuses``: those that ``torch.load(weights_only=True)`` refuses as well. (A named tuple, not a
    dataclass: ``paramscope FILE`` imports this module, and dataclasses costs more than the rest of it.)"""

    __slots__ = ()
    verdict: str
    reason: str
    imports: tuple[str, ...]
    torch_refuses: tuple[str, ...]

    def line(self) -> str:
        """One line for people: the verdict, then why (names escaped: they come from the file)."""
        from paramscope.text import safe

        if self.verdict != NEEDS_TRUST:
            return f"{self.verdict} ({safe(self.reason)})"
        listed = ", ".join(safe(name) for name in self.imports)
        if self.torch_refuses == self.imports:
            torch = "torch.load(weights_only=True) refuses it too"
        elif not self.torch_refuses:
            torch = "torch.load(weights_only=True) admits all of them"
        else:
            torch = "torch.load(weights_only=True) refuses " + ", ".join(safe(n) for n in self.torch_refuses)
        return f"{NEEDS_TRUST}: imports {listed}; {torch}"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "imports": list(self.imports),
                "torch_refuses": list(self.torch_refuses)}


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The most serious verdict (the first of equals), its imports merged with those of its equals."""
    worst: Verdict | None = None
    imports: dict[str, None] = {}
    for verdict in verdicts:
        if worst is None or SEVERITY[verdict.verdict] > SEVERITY[worst.verdict]:
            worst, imports = verdict, {}
        elif verdict.reason == PICKLE_SAFE and worst.verdict == SAFE:
            worst = verdict  # of safe files, a pickle's verdict is the one worth saying
        if verdict.verdict == worst.verdict:
            imports.update(dict.fromkeys(verdict.imports))
    if worst is None:
        return Verdict(UNREADABLE, "no checkpoint file")
    if worst.verdict != NEEDS_TRUST:
        return worst
    names = tuple(imports)[:MAX_LISTED]
    return Verdict(NEEDS_TRUST, worst.reason, names, tuple(n for n in names if n not in _weights_only_table()))


def worth_saying(verdict: Verdict) -> bool:
    """Whether ``paramscope FILE`` shows the verdict: always, but for formats safe by construction (safetensors,
    GGUF, ...: nothing to say that their format does not) and a config without remote code."""
    return verdict.verdict != SAFE or verdict.reason == PICKLE_SAFE


# ---- pickles ------------------------------------------------------------------------------------


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}
"""Python 2 module names that pickle protocols 0-2 write (fix_imports) for Python 3 ones: shown as the latter,
as torch's weights-only unpickler maps them too."""


class _Collecting:
    """The pickle machine's table of globals (it calls only ``get``): the allow-list's own entry, else an
    inert stand-in that records the name. The stand-in is a Builder whose call makes an opaque object, so
    REDUCE, NEWOBJ and BUILD on it go on as on TorchScript objects: data only, nothing imported or run."""

    def __init__(self) -> None:
        from paramscope.sources.pickle_reader import TORCH_GLOBALS

        self.base = TORCH_GLOBALS
        self.refused: dict[str, None] = {}

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        found = self.base.get(key)
        if found is not None:
            return found
        from paramscope.sources import pickle_reader as pr

        module = _PY2_MODULES.get(key[0], key[0]) if isinstance(key[0], str) else key[0]
        qualname = f"{module}.{key[1]}"[:200]
        if len(self.refused) < MAX_LISTED:
            self.refused[qualname] = None
        return pr.Builder(qualname, _opaque(qualname), newobj=True)


def _opaque(qualname: str) -> Any:
    from paramscope.sources import pickle_reader as pr

    def build(machine: Any, args: tuple[Any, ...]) -> Any:
        return pr.ScriptObject(qualname)

    return build


def _stream_verdict(handle: Any, path: Path) -> Verdict:
    """A pickle file (or legacy torch.save) from its first MiB, read again up to torch_pickle's limit only when
    the pickles run past it (a legacy file's tensors follow its pickles: they are never read)."""
    from paramscope.sources.torch_pickle import LEGACY_FIRST_READ, MAX_PICKLE_BYTES

    size = handle.seek(0, 2)
    for want in (min(size, LEGACY_FIRST_READ), min(size, MAX_PICKLE_BYTES)):
        handle.seek(0)
        verdict = _pickles_verdict(handle.read(want), path, False)
        if verdict is not _CUT or want >= size:
            break
    if verdict is _CUT:
        return Verdict(UNREADABLE, "pickle ends without STOP (truncated?)" if want >= size else
                       f"pickles run past the first {MAX_PICKLE_BYTES:,} bytes (paramscope's limit)")
    return verdict


_CUT = Verdict(UNREADABLE, "truncated")
"""What :func:`_pickles_verdict` says when the bytes it was given end inside a pickle."""


def _pickles_verdict(data: bytes, source: object, starts_zip: bool) -> Verdict:
    """Run the collecting machine over the pickle(s) in ``data``: one for a zip's data.pkl, up to five in a row
    for a legacy torch.save file (magic, protocol, sys_info, object, storage keys) or a plain pickle."""
    from paramscope.sources import pickle_reader as pr
    from paramscope.sources.torch_pickle import _Storages

    table = _Collecting()
    storages = _Storages(legacy=not starts_zip)
    start, problem = 0, None
    for _ in range(1 if starts_zip else 5):
        try:
            result = pr.load(data, source, start=start, persistent_load=storages, allowed=table)  # type: ignore[arg-type]
        except pr.TruncatedPickle:
            if not table.refused:
                return _CUT
            problem = None
            break
        except ParamscopeError as exc:
            problem = exc.reason
            if "refuses opcode INST" in problem or "refuses opcode OBJ" in problem or "refuses opcode EXT" in problem:
                table.refused.setdefault(problem.split("refuses opcode ")[1].split()[0] + " opcode (imports and calls)")
                problem = None
            break
        start = result.end
        if start >= len(data) or data[start] != 0x80:  # no further pickle (a PROTO opens each one)
            break
    names = tuple(table.refused)
    if names:
        return Verdict(NEEDS_TRUST, "pickle names globals outside the allow-list", names,
                       tuple(n for n in names if n not in _weights_only_table()))
    if problem is not None:
        return Verdict(UNREADABLE, problem)
    return Verdict(SAFE, PICKLE_SAFE)


def _zip_verdict(handle: Any, path: Path) -> Verdict:
    from paramscope.sources import torch_pickle as tp

    members = tp._check(tp._zip_directory(handle, path), path)
    prefix = tp._find_prefix(members)
    if prefix is None:
        if any(name.endswith(".npy") for name in members):
            return Verdict(SAFE, SAFE_FORMATS["numpy"])
        return Verdict(UNREADABLE, "zip archive that is not a torch.save file")
    if any(name.startswith(f"{prefix}/code/") for name in members) or f"{prefix}/constants.pkl" in members:
        return Verdict(CODE, "TorchScript archive: its code/ is a program torch.jit.load compiles and runs")
    pkl = members.get(f"{prefix}/data.pkl")
    if pkl is None:
        return Verdict(UNREADABLE, "zip archive without data.pkl")
    return _pickles_verdict(tp._read_member(handle, pkl, path, tp.MAX_PICKLE_BYTES), path, True)


_OLD_PICKLE_STARTS = frozenset(b"(c)]}NSVXIJKMLFGTUBCiU\x88\x89")
"""First bytes of a protocol 0/1 pickle (no PROTO): MARK, GLOBAL, INST's MARK, empty containers, scalars."""


def file_verdict(path: Path) -> Verdict:
    """The verdict of one checkpoint file (or ``config.json``). Never raises on bad input: ``unreadable``."""
    from pathlib import Path

    from paramscope.sources.files import HEAD_BYTES, _available_reader, open_regular

    path = Path(path)
    try:
        if path.name == "config.json":
            return config_verdict(path)
        with open_regular(path) as handle:
            head = handle.read(HEAD_BYTES)
            pickled = _pickle_verdict(handle, head, path)
            if pickled is not None:
                return pickled
        if not head:
            return Verdict(UNREADABLE, "empty file")
        for name, kind in _SAFE_READERS.items():
            module = _available_reader(name)
            reader = module.probe(head, path) if module is not None else None
            if reader is not None:
                for arg in reader.args:  # a probe may hand over what it opened
                    if not isinstance(arg, Path) and hasattr(arg, "close"):
                        arg.close()
                return Verdict(SAFE, SAFE_FORMATS[kind])
        if head[0] in _OLD_PICKLE_STARTS:
            # a protocol 0/1 pickle has no PROTO opcode, yet pickle.load (and torch.load of a file saved with
            # pickle_protocol=0) runs it all the same: its imports are named, never taken for "unreadable"
            with open_regular(path) as handle:
                verdict = _stream_verdict(handle, path)
            if verdict.verdict == NEEDS_TRUST:
                return verdict
        return Verdict(UNREADABLE, "not a checkpoint format paramscope knows")
    except (ParamscopeError, OSError, MemoryError, RecursionError) as exc:
        return _unreadable(exc)


def _unreadable(exc: BaseException) -> Verdict:
    """What a verdict says when the file could not be judged (bad input, a read that failed, our limits)."""
    if isinstance(exc, ParamscopeError):
        return Verdict(UNREADABLE, exc.reason)
    if isinstance(exc, OSError):
        return Verdict(UNREADABLE, f"cannot read: {exc.strerror or exc}")
    return Verdict(UNREADABLE, "too large or too deeply nested to check")


def _pickle_verdict(handle: Any, head: bytes, source: Any) -> Verdict | None:
    """The verdict of a torch.save zip or a pickle (local file or :class:`~paramscope.sources.ranged.CachedFile`
    over a remote one), from its first bytes ``head``; None for any other file."""
    if head.startswith(b"PK\x03\x04"):
        return _zip_verdict(handle, source)
    if head[:1] == b"\x80" and head[8:9] != b"{":
        # PROTO: a pickle (a legacy torch.save file starts with one too). A safetensors header of
        # 128 + 256k bytes starts with 0x80 as well: its JSON opens at byte 8.
        return _stream_verdict(handle, source)
    return None


def ranged_verdict(reader: Any) -> Verdict:
    """The verdict of a remote file served by ``reader`` (a :class:`~paramscope.sources.ranged.RangeReader`:
    a Hub file, a URL), by ranged reads of what the local verdict reads: a zip's end records, directory and
    ``data.pkl`` (or a legacy file's first MiB), never a storage. Never raises on bad input: ``unreadable``."""
    from paramscope.sources.files import HEAD_BYTES
    from paramscope.sources.ranged import CachedFile
    from paramscope.sources.torch_pickle import _EOCD, REMOTE_READ_AHEAD, RemoteName

    handle = CachedFile(reader, read_ahead=REMOTE_READ_AHEAD)
    try:
        size = handle.size()
        label = RemoteName(reader.name, reader.name.rsplit("/", 1)[-1], size)
        head = handle.read(HEAD_BYTES)
        if head.startswith(b"PK\x03\x04"):
            handle.prefetch(max(0, size - (65_535 + _EOCD.size)), size)  # end records, usually the directory
        verdict = _pickle_verdict(handle, head, label)
        if verdict is not None:
            return verdict
        if head[:4] == b"GGUF":
            return Verdict(SAFE, SAFE_FORMATS["gguf"])
        return Verdict(UNREADABLE, "not a torch.save file or pickle")
    except (ParamscopeError, OSError, MemoryError, RecursionError) as exc:
        return _unreadable(exc)
    finally:
        handle.close()


def remote_verdict(source: str) -> Verdict | None:
    """The verdict of the pickles (torch.save files) that reading a Hub ``source`` reads (the named file, else
    the PyTorch index's shards, else ``pytorch_model.bin``), or an http(s) URL (the file, or its index's shards),
    each by :func:`ranged_verdict` (a cached file: by :func:`file_verdict`); None where it reads no pickle
    (safetensors, GGUF: safe by construction)."""
    from pathlib import Path

    from paramscope.sources import hub, remote

    try:
        files = remote.url_pickles(source) if source.startswith(("http://", "https://")) else hub.pickle_files(source)
    except ParamscopeError as exc:
        return Verdict(UNREADABLE, exc.reason)
    if not files:
        return None
    return combine(file_verdict(f) if isinstance(f, Path) else ranged_verdict(f) for f in files)


MAX_CONFIG_BYTES = 16 << 20


def config_verdict(path: Path) -> Verdict:
    """``code`` when a transformers ``config.json`` has ``auto_map`` (its classes are the repository's own
    Python, run by ``trust_remote_code=True``); else ``safe``."""
    from paramscope.sources.files import open_regular

    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except ParamscopeError as exc:
        return Verdict(UNREADABLE, exc.reason)
    except OSError as exc:
        return Verdict(UNREADABLE, f"cannot read: {exc.strerror or exc}")
    return config_text_verdict(raw)


def config_text_verdict(raw: bytes) -> Verdict:
    if len(raw) > MAX_CONFIG_BYTES:
        return Verdict(UNREADABLE, f"config.json larger than {MAX_CONFIG_BYTES:,} bytes")
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        return Verdict(UNREADABLE, "config.json is not valid JSON")
    return config_dict_verdict(config)


def config_dict_verdict(config: Any) -> Verdict:
    """``code`` when the parsed config's ``auto_map`` names the repository's own classes; else ``safe``."""
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if auto_map:
        shown = ", ".join(str(v)[:100] for v in (auto_map.values() if isinstance(auto_map, dict) else [auto_map]))
        return Verdict(CODE, f"config.json auto_map runs the repository's own code (trust_remote_code): {shown}"[:500])
    return Verdict(SAFE, "config.json without auto_map: no remote code")


def after_read(path: Path, format: str, metadata: dict[str, Any]) -> Verdict:
    """The verdict of a local file or directory paramscope has just read (``format``, ``metadata``: the report's).
    A torch.save file that was read passed the allow-list already (the reader refuses any other global), so
    its pickle is not run a second time: it is ``safe``, or ``code`` where it was a TorchScript archive. A file
    read as one of :data:`paramscope.sources.READ_IS_SAFE` is that format: :func:`file_verdict` would only probe
    it again."""
    from paramscope.sources import READ_IS_SAFE

    if format in READ_IS_SAFE and os.path.isfile(path):
        return Verdict(SAFE, SAFE_FORMATS[format])
    from pathlib import Path

    path = Path(path)
    if format == "pytorch" and not path.is_dir():
        if metadata.get("torchscript"):
            return Verdict(CODE, "TorchScript archive: its code/ is a program torch.jit.load compiles and runs")
        config = path.parent / "config.json"
        return combine([Verdict(SAFE, PICKLE_SAFE), *([config_verdict(config)] if config.is_file() else [])])
    return path_verdict(path)


def after_remote_read(format: str, metadata: dict[str, Any]) -> Verdict | None:
    """The verdict of a remote torch.save file paramscope has just read by ranged reads (``format``,
    ``metadata``: the report's): its pickle passed the allow-list, as a local one's (:func:`after_read`);
    None for the formats that hold no code."""
    if format != "pytorch":
        return None
    if metadata.get("torchscript"):
        return Verdict(CODE, "TorchScript archive: its code/ is a program torch.jit.load compiles and runs")
    return Verdict(SAFE, PICKLE_SAFE)


def path_verdict(path: Path, files: Iterable[Path] | None = None) -> Verdict:
    """A file's verdict, or a directory's: the most serious of its checkpoint files' and its config's."""
    from pathlib import Path

    path = Path(path)
    if not path.is_dir():
        return file_verdict(path)
    if files is None:
        files = checkpoint_files(path)
    return combine(file_verdict(f) for f in files)


def checkpoint_files(directory: Path) -> list[Path]:
    """A directory's checkpoint files and config.json, in name order (symbolic links not followed)."""
    from pathlib import Path

    from paramscope.sources import CHECKPOINT_SUFFIXES

    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries
            if (e.name.endswith(CHECKPOINT_SUFFIXES) or e.name == "config.json") and e.is_file(follow_symlinks=False)]
