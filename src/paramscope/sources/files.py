"""Which reader reads a path: detected by magic bytes, the extension only as a hint.

Each checkpoint reader is a module of this package exposing::

    FORMAT: str                                             # "safetensors", "pytorch", "gguf", ...
    def probe(head: bytes, path: Path) -> Reader | None     # is this file mine? (head = first 64 bytes)
    def read(path: Path) -> Inventory                       # a file known to be this format, probed or not

``probe`` returns a :class:`Reader` for the file, or None; ``Reader.read()`` returns the records (or raises
ParamscopeError on bad input) from what the probe already learned (a zip's directory, the opened archive, a
parsed config), so nothing is parsed twice and no reader keeps anything between the two. Directories are
claimed by ``sniff_directory(path) -> bool`` and read by ``read(path)``.

Readers never import torch, never execute anything from the file, and open it read-only.

The one exception is ``config`` (a transformers ``config.json``): it builds the architecture with
transformers on the meta device, so it imports torch, but still runs no code from the file.

Transformers configs and directories
------------------------------------
* ``FILE.json`` that is a transformers config (has ``model_type`` or ``architectures``): the architecture,
  built on meta. When weights sit beside it (a directory a weights reader claims), they are compared
  with the architecture: ``metadata["fit"]`` (missing / unexpected / shape-mismatched) and a note.
* A directory holding weights (and maybe a ``config.json``): the weights are read, torch-free as always
  (any format a reader reads; of several, the first in :data:`DIRECTORY_PREFERENCE`, a note naming the rest;
  a ``pytorch_model.bin.index.json`` reads its shards as one set); never replaced by a build from the config;
  a ``config.json`` beside them is handed on (``Inventory.pending["config"]``) for the rules stage,
  :func:`paramscope.pipeline.settle`, to apply (packed quantization, MoE active counts, declared ties).
* A directory holding a ``config.json`` and no weights: the architecture from the config.
* A single weights file whose directory has a ``config.json``: read, the config handed on as above.
  A config that cannot be read is not an error there (the weights are what was asked for): a note says so.
"""

from __future__ import annotations

import importlib
import os
import stat
from contextlib import contextmanager

from paramscope.errors import ParamscopeError
from paramscope.gcpause import paused_gc
from paramscope.records import MAX_NAME_LENGTH, Inventory
from paramscope.sources import path_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    import zipfile
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import BinaryIO

# Each probe is exact enough that no two readers claim one file; the order only puts the readers that
# are cheapest to import first (torch_pickle brings the whole pickle machine along).
READERS = ("safetensors", "gguf", "numpy_files", "onnx", "keras", "config", "torch_pickle")
CONFIG_READER = "config"
WEIGHT_READERS = tuple(name for name in READERS if name != CONFIG_READER)
CONFIG_NAME = "config.json"

HEAD_BYTES = 64
TEXT_PATH_READERS = frozenset({"safetensors"})
"""Readers whose probe takes a file's path as it was given (text, from :func:`paramscope.sources.path_text`); the
others get a ``Path``. Reading a small safetensors file so imports no pathlib (issue 12)."""


def _reader(name: str):
    return importlib.import_module(f"paramscope.sources.{name}")


class Reader:
    """A file a reader's ``probe`` claimed, ready to read: :meth:`read` calls ``function(*args)``, whose
    arguments carry what the probe learned (see the module docstring)."""

    __slots__ = ("args", "function")

    def __init__(self, function: Callable[..., Inventory], *args: object) -> None:
        self.function = function
        self.args = args

    def read(self) -> Inventory:
        return self.function(*self.args)


def read_path(path: str | Path) -> Inventory:
    """The Inventory of a checkpoint file or directory (see the module docstring for configs)."""
    if stat.S_ISDIR(path_mode(path) or 0):
        from pathlib import Path

        return _read_directory(Path(path))
    name, reader = _probe(path, READERS)
    inventory = reader.read()
    config_path = os.path.join(os.path.dirname(path), CONFIG_NAME)  # str(Path(path).parent / CONFIG_NAME)
    return inventory if name == CONFIG_READER else _with_config(inventory, config_path)


def _probe(path: str | Path, readers: tuple[str, ...]) -> tuple[str, Reader]:
    """The first of ``readers`` whose probe claims the file ``path`` (by its first bytes), with its Reader."""
    with open_regular(path) as handle:
        try:
            head = handle.read(HEAD_BYTES)
        except OSError as exc:
            raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise ParamscopeError(path, "empty file")
    for name in readers:
        module = _available_reader(name)
        if module is not None and name not in TEXT_PATH_READERS:
            from pathlib import Path

            path = Path(path)
        reader = module.probe(head, path) if module is not None else None
        if reader is not None:
            return name, reader
    raise ParamscopeError(path, "not a checkpoint format paramscope knows (" + ", ".join(READERS) + ")")


# ---- regular files only: a FIFO or /dev/stdin blocks the open or the read, /dev/zero never ends

FILE_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def is_file_entry(entry: os.DirEntry[str]) -> bool:
    """Whether a directory entry is a regular file (symlinks followed); False for one that cannot be told —
    a symlink loop, a name too long — so that one bad entry does not hide the rest of the directory."""
    try:
        return entry.is_file()
    except OSError:
        return False


def describe_mode(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (``'a named pipe (FIFO)'``), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in FILE_KINDS if test(mode)), "not a regular file")


def check_regular(path: Path | str) -> None:
    """Refuse ``path`` unless it is a regular file (symlinks followed), before anything opens it: the one
    rule for every local file a reader opens by name (a source, a config.json beside it, an index's shard)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ParamscopeError(path, f"cannot open: {exc.strerror or exc}") from None
    kind = describe_mode(mode)
    if kind is not None:
        raise ParamscopeError(path, f"{kind}, not a regular file: only files are read")


def open_regular(path: Path | str, buffering: int = -1) -> BinaryIO:
    """``path`` opened read-only, refused unless it is a regular file: checked by name, then opened without
    blocking (a FIFO swapped in meanwhile opens at once) and checked again on the descriptor, so what is read
    is what was checked."""
    check_regular(path)  # first by name: a socket cannot even be opened, and its error would say less
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ParamscopeError(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        kind = describe_mode(os.fstat(fd).st_mode)
        if kind is not None:
            raise ParamscopeError(path, f"{kind}, not a regular file: only files are read")
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=buffering)  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def _available_reader(name: str):
    """The reader module ``name``, or None when it is not part of this build."""
    try:
        return _reader(name)
    except ModuleNotFoundError as exc:
        if exc.name == f"paramscope.sources.{name}":
            return None
        raise


# ---- directories: which checkpoint of several is read

DIRECTORY_PREFERENCE: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("safetensors", (".safetensors", ".safetensors.index.json"), "header-only and exact; transformers loads it first"),
    ("pytorch", (".bin", ".pt", ".pth", ".ckpt", ".bin.index.json"), "transformers' fallback (pytorch_model.bin)"),
    ("keras", (".keras", ".h5"), "transformers' TensorFlow weights (tf_model.h5)"),
    ("gguf", (".gguf",), "a llama.cpp export, often re-quantized"),
    ("onnx", (".onnx",), "an ONNX export, often re-quantized or fused"),
    ("numpy", (".npz", ".npy"), "bare arrays"),
)
"""The one preference order for a directory holding weights: ``(format, file name endings, why)``. The
formats transformers itself loads come first, in its own order (``modeling_utils``: safetensors, then
``pytorch_model.bin``, then ``tf_model.h5``), then the exports made from such weights (which may have been
re-quantized or fused), then bare arrays. The first format with a file in the directory is read; the
others are named in a note."""

PYTORCH_INDEX_SUFFIX = ".bin.index.json"
PYTORCH_INDEX = "pytorch_model.bin.index.json"

NOT_WEIGHTS = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"})
"""What transformers' ``Trainer`` saves beside a checkpoint's weights (``trainer.py``: TRAINING_ARGS_NAME,
OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME; and ``rng_state*.pth``): never the model in a directory."""


def _not_weights(name: str) -> bool:
    return name in NOT_WEIGHTS or (name.startswith("rng_state") and name.endswith(".pth"))


class DirectoryPlan:
    """What a directory's weights are: ``format`` (a :data:`DIRECTORY_PREFERENCE` name), ``files`` (the
    names of that format), ``others`` (the names of the formats not read)."""

    __slots__ = ("files", "format", "others", "path")

    def __init__(self, path: Path, format: str, files: list[str], others: list[str]) -> None:
        self.path, self.format, self.files, self.others = path, format, files, others

    def note(self) -> str | None:
        """Which format was read and why, when the directory held more than one."""
        if not self.others:
            return None
        order = ", ".join(name for name, _, _ in DIRECTORY_PREFERENCE)
        why = next(why for name, _, why in DIRECTORY_PREFERENCE if name == self.format)
        return (f"read the {self.format} weights ({why}); not read: {_listed(self.others)} "
                f"(a directory's formats are read in this order: {order})")

    def read(self) -> Inventory:
        """The weights, torch-free, with no config applied."""
        path, files = self.path, self.files
        if self.format == "safetensors":
            inventory = _reader("safetensors").read(path)
        elif self.format == "pytorch" and any(name.endswith(PYTORCH_INDEX_SUFFIX) for name in files):
            indexes = [name for name in files if name.endswith(PYTORCH_INDEX_SUFFIX)]
            if PYTORCH_INDEX in indexes:
                indexes = [PYTORCH_INDEX]
            if len(indexes) > 1:
                raise ParamscopeError(path, f"several pytorch indexes ({_listed(indexes)}): name one of them")
            inventory = read_pytorch_index(path / indexes[0])
        elif self.format == "gguf" and _reader("gguf").sniff_directory(path):  # the parts of one split GGUF
            inventory = _reader("gguf").read(path)
        elif len(files) > 1:
            raise ParamscopeError(path, f"several {self.format} checkpoints ({_listed(files)}): name one of them")
        else:
            inventory = _read_file(path / files[0])
        note = self.note()
        return inventory.replace(notes=[*inventory.notes, note]) if note else inventory


def _listed(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def directory_plan(path: Path) -> DirectoryPlan | None:
    """Which weights of the directory ``path`` are read (:data:`DIRECTORY_PREFERENCE`), or None: none there."""
    try:
        names = sorted(e.name for e in os.scandir(path) if is_file_entry(e))
    except OSError as exc:
        raise ParamscopeError(path, f"cannot list: {exc.strerror or exc}") from None
    found = [(fmt, [n for n in names if n.endswith(endings) and not _not_weights(n)])
             for fmt, endings, _ in DIRECTORY_PREFERENCE]
    present = [(fmt, files) for fmt, files in found if files]
    if not present:
        return None
    (fmt, files), rest = present[0], present[1:]
    return DirectoryPlan(path, fmt, files, [name for _, others in rest for name in others])


def directory_has_weights(path: Path) -> bool:
    """Whether the directory holds weights of a format paramscope reads (:data:`DIRECTORY_PREFERENCE`)."""
    return directory_plan(path) is not None


def read_weights_directory(path: Path) -> Inventory:
    """The weights of a directory, read torch-free, with no config applied."""
    plan = directory_plan(path)
    if plan is None:
        raise ParamscopeError(path, "directory holds no checkpoint paramscope can read")
    return plan.read()


def _read_file(path: Path) -> Inventory:
    """One weights file of a directory, probed by its bytes as :func:`read_path` probes it (a JSON file is
    not taken for a config there), with no config applied."""
    return _probe(path, WEIGHT_READERS)[1].read()


def read_pytorch_index(path: Path) -> Inventory:
    """A sharded torch.save checkpoint (``pytorch_model.bin.index.json``, the layout and JSON of a safetensors
    index): every shard read torch-free and joined, the weight map checked against what the shards hold."""
    from paramscope.sources import safetensors as st
    from paramscope.sources import torch_pickle

    try:
        st.check_index_size(path, path.stat().st_size)
        raw = path.read_bytes()
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    weight_map, declared = st.parse_index(path, raw)
    roots = st._allowed_roots(path.parent)
    records: list = []
    owner: dict[str, str] = {}
    notes: list[str] = []
    shards = list(dict.fromkeys(weight_map.values()))
    for label in shards:
        shard = st._shard_path(path, path.parent, label, roots)
        inventory = torch_pickle.read(shard)
        for record in inventory.tensors:
            if record.name in owner:
                raise ParamscopeError(shard, f"tensor {record.name!r} is also in shard {owner[record.name]!r}")
            owner[record.name] = label
            # a tie is a storage of one file: the same storage key in another shard is another tensor
            records.append(record if record.tie is None else record.replace(tie=(label, record.tie)))
        notes += [f"{label}: {note}" for note in inventory.notes]
    notes += st.check_weight_map(path, weight_map, owner)
    metadata: dict[str, object] = {"shards": len(shards)}
    if type(declared.get("total_size")) is int:
        metadata["index total_size"] = declared["total_size"]
    return Inventory(source=str(path), format=torch_pickle.FORMAT, tensors=records, metadata=metadata, notes=notes)


def _read_directory(path: Path) -> Inventory:
    """A directory: its weights (config applied), else the architecture of its ``config.json``."""
    config_path = path / CONFIG_NAME
    plan = directory_plan(path)
    if plan is not None:  # weights are never replaced by a build from the config: they are what is there
        return _with_config(plan.read(), config_path)
    if os.path.lexists(config_path):
        from paramscope.sources.config import read_config_path

        check_regular(config_path)
        inventory = read_config_path(config_path)
        unread = _unread_weight_files(path)
        if unread:
            inventory = inventory.replace(notes=[
                *inventory.notes, f"not compared with the architecture: {', '.join(unread)} (a format paramscope "
                                  "does not read)"])
        return inventory
    raise ParamscopeError(path, "directory holds no checkpoint paramscope can read")


WEIGHT_SUFFIXES = (".msgpack",)
"""Weights a directory holds that no reader reads (Flax's ``flax_model.msgpack``): named in a note."""


def _unread_weight_files(path: Path, limit: int = 3) -> list[str]:
    try:
        names = sorted(e.name for e in os.scandir(path) if e.name.endswith(WEIGHT_SUFFIXES) and is_file_entry(e))
    except OSError:
        return []
    return names[:limit] + ([f"and {len(names) - limit} more"] if len(names) > limit else [])


def _with_config(inventory: Inventory, config_path: str | Path) -> Inventory:
    """``inventory`` handed on with what the rules stage needs (``pending``): the transformers config at
    ``config_path`` when there is one, and for safetensors a reader of a few small tensors' bytes. No rule
    is applied here: :func:`paramscope.pipeline.settle` applies them (packed quantization, MoE, ties)."""
    pending = dict(inventory.pending)
    notes = list(inventory.notes)
    if inventory.format == "safetensors":
        from paramscope.sources.safetensors import small_tensor_reader

        pending["small_tensors"] = small_tensor_reader(inventory.source, inventory)
    if not stat.S_ISREG(path_mode(config_path) or 0):  # none, or not a regular file (Path.is_file())
        if os.path.lexists(config_path):
            notes.append(f"{CONFIG_NAME} beside the weights not used: not a regular file")
        return inventory.replace(pending=pending, notes=notes)
    from paramscope.sources.config import is_transformers_config, load_json

    try:
        check_regular(config_path)  # is_file() above was a moment ago: a FIFO may have been swapped in
        config = load_json(config_path)
    except ParamscopeError as exc:
        notes.append(f"{CONFIG_NAME} beside the weights not used: {exc.reason}")
        return inventory.replace(pending=pending, notes=notes)
    if is_transformers_config(config):
        pending["config"] = config
    return inventory.replace(pending=pending, notes=notes)


# ---- names built by joining a path: bounded per name and in total

NAME_ALLOWANCE = 32 << 20
"""Characters all joined names may add to what the file itself spells out: their total is bounded by the
file's size plus this, so output and memory grow with the input, never with a prefix times its uses."""


class NameBudget:
    """Names joined from parts (an ONNX subgraph's ``<node>.<attribute>.`` prefixes, HDF5 groups, a pickle's
    keys), for one file of ``size`` bytes: :meth:`spend` each name's length before it is built, so no name
    past :data:`~paramscope.records.MAX_NAME_LENGTH` and no total past :data:`NAME_ALLOWANCE` is ever made."""

    def __init__(self, source: object, size: int) -> None:
        self.source = source
        self.left = size + NAME_ALLOWANCE

    def spend(self, length: int) -> None:
        if length > MAX_NAME_LENGTH:
            raise ParamscopeError(self.source, f"a tensor name of {length:,} characters (its path included), "
                                               f"longer than the {MAX_NAME_LENGTH:,} paramscope reads")
        self.left -= length
        if self.left < 0:
            raise ParamscopeError(self.source, "tensor names (paths included) total more characters than the file "
                                               f"has bytes plus {NAME_ALLOWANCE >> 20} MiB: a prefix repeated "
                                               "past any real model")


# ---- zip containers (.npz, .keras, torch.save): shared by the readers that probe and open them

DEFLATE_MAX_RATIO = 1_032
"""Deflate can shrink data at most ~1032:1 (a 258-byte match per two bits): a member that claims to
inflate further is lying about its size."""
ZIP_LOCAL_HEADER = 30
"""Bytes of a local file header before its name and extra field."""


def check_zip_entries(source: object, entries: list[tuple[str, int, int, int, int, int]], data_end: int) -> None:
    """Refuse a zip whose directory lies about where its members are or how big they are.

    ``entries`` are ``(name, header offset, name length, compressed size, uncompressed size, method)``;
    ``data_end`` is where member data must end (the start of the central directory). Each member's local
    header, name and data must lie before ``data_end`` and before the next member (no overlaps: the
    overlapping-member zip bomb), a stored member's two sizes must agree and a deflated one may not claim
    to inflate more than :data:`DEFLATE_MAX_RATIO` times. Sizes are what readers count; they are
    trusted only once these hold."""
    ordered = sorted(entries, key=lambda e: e[1])
    for i, (name, offset, name_len, compressed, size, method) in enumerate(ordered):
        end = offset + ZIP_LOCAL_HEADER + name_len + compressed
        limit = ordered[i + 1][1] if i + 1 < len(ordered) else data_end
        shown = name[:200]
        if end > data_end:
            raise ParamscopeError(source, f"zip member {shown!r} claims {compressed:,} bytes at offset {offset:,}, "
                                          f"past the end of the member data ({data_end:,} bytes)")
        if end > limit:
            raise ParamscopeError(source, f"zip member {shown!r} overlaps the next member (at offset {limit:,})")
        if method == 0 and compressed != size:
            raise ParamscopeError(source, f"zip member {shown!r} is stored but claims {size:,} bytes "
                                          f"in {compressed:,}")
        if method == 8 and size > DEFLATE_MAX_RATIO * compressed + 1_024:
            raise ParamscopeError(source, f"zip member {shown!r} claims to inflate {compressed:,} bytes to "
                                          f"{size:,}, more than deflate can")


def _zipfile_entries(archive: zipfile.ZipFile) -> list[tuple[str, int, int, int, int, int]]:
    entries = []
    for info in archive.infolist():
        encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"  # how zipfile decoded the name
        try:
            name_len = len(info.orig_filename.encode(encoding))
        except UnicodeEncodeError:
            name_len = len(info.orig_filename.encode("utf-8", "surrogatepass"))
        entries.append((info.filename, info.header_offset, name_len, info.compress_size, info.file_size,
                        info.compress_type))
    return entries


def _checked(archive: zipfile.ZipFile, source: object) -> zipfile.ZipFile:
    """``archive`` once :func:`check_zip_entries` accepts its directory (it is closed otherwise)."""
    try:
        data_end = archive.start_dir  # type: ignore[attr-defined]  # where zipfile found the directory
        check_zip_entries(source, _zipfile_entries(archive), data_end)
    except BaseException:
        archive.close()
        raise
    return archive


def probe_zip(path: Path, kind: str) -> zipfile.ZipFile | None:
    """:func:`open_zip` for a probe: the opened archive (the caller closes it, or hands it to its Reader),
    or None when ``path`` is not a readable zip or one whose directory :func:`check_zip_entries` refuses."""
    try:
        return open_zip(path, kind)
    except ParamscopeError:
        return None


def open_zip(path: Path, kind: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)`` whose directory :func:`check_zip_entries` accepts, or a ParamscopeError
    saying the ``kind`` archive is not valid."""
    import zipfile

    # Opened here, not by name in zipfile: a FIFO put in place of the file since read_path read its head
    # would block zipfile's open() forever; open_regular refuses it.
    handle = open_regular(path)
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        handle.close()
        raise ParamscopeError(path, f"not a valid {kind} (zip) archive: {exc}") from None
    except OSError as exc:
        handle.close()
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    archive._filePassed = 0  # type: ignore[attr-defined]  # the archive owns the handle: its close() closes it
    return _checked(archive, path)


@contextmanager
def unbuffered_reader(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened read-only and unbuffered (the reader's own cursor buffers), with the cyclic
    collector paused (header readers build many small objects and no cycles) and OS errors turned
    into one-line ParamscopeErrors."""
    handle = open_regular(path, buffering=0)
    with paused_gc(), handle:
        try:
            yield handle
        except OSError as exc:
            raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None


class FileWindow:
    """A forward reader over an open file through one bounded buffer, shared by the GGUF and ONNX readers:
    small reads are served from memory, long skips become seeks, and nothing is read past what a check
    said the file holds. ``buf[0]`` is at file offset ``base``; ``pos`` indexes ``buf``."""

    CHUNK = 1 << 20

    def __init__(self, handle: BinaryIO, size: int, source: Path) -> None:
        self.handle = handle
        self.size = size
        self.source = source
        self.buf = b""
        self.base = 0
        self.pos = 0

    def tell(self) -> int:
        return self.base + self.pos

    def left(self) -> int:
        return self.size - self.tell()

    def fail(self, reason: str) -> ParamscopeError:
        return ParamscopeError(self.source, reason)

    def _fill(self, need: int, what: str = "a field") -> None:
        """Make ``need`` bytes available at ``pos``, or fail: the file ends before ``what``."""
        offset = self.tell()
        if need <= self.size - offset:
            self.handle.seek(offset)
            data = self.handle.read(max(need, min(self.CHUNK, self.size - offset)))
            if len(data) >= need:
                self.buf, self.base, self.pos = data, offset, 0
                return
        raise self.fail(f"truncated: the file ends inside {what} at byte {offset}")
