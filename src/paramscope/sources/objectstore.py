"""Checkpoints in object stores (``s3://``, ``gs://``, ``az://``, any fsspec URL), headers only, by ranged reads.

fsspec opens the URL; s3fs, gcsfs and adlfs (the ``paramscope[s3]``, ``[gcs]``, ``[azure]`` extras) find
credentials where they always do: the environment (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``, ...) and their config files
(``~/.aws``, gcloud's, ...). paramscope never prints them: an error names the object and what went wrong
(no such object, access denied), and any message passed on from a client library has every credential the
environment holds (and any URL query string, where a signature would sit) cut out first.

What a URL names:

* ``.../model.safetensors``: that file's header (two ranged reads at most);
* ``.../model.safetensors.index.json``: the index, then each shard's header;
* ``.../model.gguf``, ``.../pytorch_model.bin`` (a torch.save zip): read through the GGUF and PyTorch-zip
  header readers when this build has them (``gguf.read_ranged``, ``torch_pickle.read_ranged``);
* a prefix (``s3://bucket/dir/``, or a name that is no object): its index, else its safetensors files, as one
  model; a ``config.json`` there is handed on to the rules, as beside local weights.

Each transport read adapts to :class:`paramscope.sources.ranged.RangeReader` (:class:`FsspecReader`).
"""

from __future__ import annotations

import json
import os
import re

from paramscope.errors import MissingExtraError, ParamscopeError
from paramscope.records import Inventory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

FORMAT = "safetensors"
EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
          "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
          "adl": ("adlfs", "azure")}
"""URL scheme -> (the package fsspec needs for it, the paramscope extra that installs it)."""
FIRST_READ = 64 * 1024
"""Bytes of a safetensors file read first: its 8-byte length and, for most files, the whole header."""
MAX_INDEX = 64 << 20
MAX_CONFIG = 16 << 20
MAX_OBJECTS = 100_000
"""Objects of one prefix listed at most (a model is a few dozen)."""
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECURITY_TOKEN",
                    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING",
                    "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN")
_QUERY = re.compile(r"\?[^\s'\"]*")


def redact(message: str) -> str:
    """``message`` without any credential the environment holds, and without URL query strings."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    return _QUERY.sub("?***", message)


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path) for ``url``; a missing fsspec or client package is one line naming the extra."""
    scheme = url.split("://", 1)[0].lower()
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        # s3://key:secret@bucket/: fsspec takes it for a bucket name and quotes it back in its error
        raise ParamscopeError(url, "credentials in the URL are not supported (give them in the environment)")
    module, extra = EXTRAS.get(scheme, ("fsspec", "s3"))
    try:
        import fsspec
    except ImportError:
        raise MissingExtraError(url, "fsspec", extra, f"reading {scheme}:// URLs") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        raise MissingExtraError(url, module, extra, f"reading {scheme}:// URLs") from None
    except ValueError as exc:  # an unknown protocol
        raise ParamscopeError(url, redact(f"not a URL fsspec can open: {exc}")) from None


def failure(source: str, what: str, exc: BaseException) -> ParamscopeError:
    """A client library's exception as one line: what kind of failure, never a credential."""
    if isinstance(exc, FileNotFoundError):
        return ParamscopeError(source, f"{what}: no such object")
    if isinstance(exc, PermissionError):
        return ParamscopeError(source, f"{what}: access denied (check the credentials and the bucket's policy)")
    from paramscope.text import one_line

    detail = one_line(redact(f"{type(exc).__name__}: {exc}"), 300)
    return ParamscopeError(source, f"{what}: cannot read: {detail}")


class FsspecReader:
    """:class:`~paramscope.sources.ranged.RangeReader` over an fsspec filesystem: ``cat_file`` with a range."""

    def __init__(self, fs: Any, path: str, name: str, size: int | None = None, source: str | None = None) -> None:
        self.source = source or name  # what errors name first: the URL the user gave
        self.fs = fs
        self.path = path
        self.name = name
        self._size = size
        self.fetched = 0

    def size(self) -> int | None:
        if self._size is None:
            try:
                self._size = int(self.fs.size(self.path))
            except Exception as exc:
                raise failure(self.source, self.name, exc) from None
        return self._size

    def read(self, start: int, stop: int) -> bytes:
        size = self.size()
        if size is not None:
            stop = min(stop, size)
        if stop <= start:
            return b""
        try:
            data = self.fs.cat_file(self.path, start=start, end=stop)
        except Exception as exc:
            raise failure(self.source, self.name, exc) from None
        self.fetched += len(data)
        return bytes(data)


def read_safetensors(reader: Any, source: str, origin: str) -> tuple[list[Any], dict[str, str], int | None]:
    """Records, ``__metadata__`` and size of the safetensors file behind ``reader`` (two reads at most)."""
    from paramscope.sources import safetensors

    return safetensors.read_ranged(reader, source, origin, FIRST_READ)


def read_small(fs: Any, path: str, source: str, name: str, limit: int) -> bytes:
    reader = FsspecReader(fs, path, name, source=source)
    size = reader.size()
    if size is not None and size > limit:
        raise ParamscopeError(source, f"{name}: {size:,} bytes; paramscope reads at most {limit:,}")
    return reader.read(0, limit)


def _listing(fs: Any, path: str, source: str) -> list[dict[str, Any]]:
    """The objects directly under ``path`` (name, size, ETag), at most :data:`MAX_OBJECTS`."""
    try:
        entries = fs.ls(path.rstrip("/"), detail=True, refresh=True)
    except FileNotFoundError:  # S3 has no directories: an empty prefix is no prefix
        entries = []
    except Exception as exc:
        raise failure(source, "listing", exc) from None
    if len(entries) > MAX_OBJECTS:
        raise ParamscopeError(source, f"more than {MAX_OBJECTS:,} objects under the prefix")
    return [e for e in entries if e.get("type") == "file"]


def _etag(entry: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "etag_", "LastModified", "mtime"):
        if entry.get(key):
            return f"{key}={entry[key]}"
    return f"size={entry.get('size')}"


def _base(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def read(url: str, progress: Callable[..., Any] | None = None) -> Inventory:
    """The Inventory of an object-store URL (see the module docstring), headers only."""
    from paramscope.sources.safetensors import INDEX_SUFFIX

    fs, path = filesystem(url)
    name = _base(path) or url
    if path.endswith(INDEX_SUFFIX):
        return _read_index(fs, path, url, progress)
    if path.endswith(".safetensors"):
        reader = FsspecReader(fs, path, name, source=url)
        records, metadata, _ = read_safetensors(reader, url, name)
        meta: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
        meta["fetched_bytes"] = reader.fetched
        return Inventory(source=url, format=FORMAT, tensors=records, metadata=meta, notes=[_note(1, reader.fetched)])
    if path.endswith((".gguf", ".bin", ".pt", ".pth", ".ckpt")):
        return _read_other(fs, path, url, name)
    return _read_prefix(fs, path, url, progress)


def _read_other(fs: Any, path: str, url: str, name: str) -> Inventory:
    """GGUF and torch.save zips, through their ranged header readers when this build has them."""
    from paramscope.sources import gguf, torch_pickle

    module = gguf if path.endswith(".gguf") else torch_pickle
    ranged = getattr(module, "read_ranged", None)
    if ranged is None:
        raise ParamscopeError(url, f"{module.FORMAT if hasattr(module, 'FORMAT') else 'this format'} files are "
                                   "not read from object stores by this build (safetensors only)")
    return ranged(FsspecReader(fs, path, name, source=url), url)


def _read_index(fs: Any, path: str, url: str, progress: Any) -> Inventory:
    from paramscope.sources import remote

    name = _base(path)
    raw = read_small(fs, path, url, name, MAX_INDEX)
    weight_map, _, data_size = remote.plan_index(url, raw)
    directory = path.rsplit("/", 1)[0]
    shards = list(dict.fromkeys(weight_map.values()))
    records, owner, first_meta, fetched = _read_shards(fs, directory, shards, url, progress)
    from paramscope.sources.safetensors import check_weight_map

    notes = check_weight_map(url, weight_map, owner)
    metadata: dict[str, Any] = {"shards": len(shards), **first_meta, "fetched_bytes": fetched + len(raw)}
    if data_size is not None:
        metadata["index total_size"] = data_size
    notes.append(_note(len(shards), fetched + len(raw)))
    return _with_config(Inventory(source=url, format=FORMAT, tensors=records, metadata=metadata, notes=notes),
                        fs, directory, url)


def _read_shards(fs: Any, directory: str, shards: list[str], source: str,
                 progress: Any) -> tuple[list[Any], dict[str, str], dict[str, Any], int]:
    from concurrent.futures import ThreadPoolExecutor

    from paramscope.sources import remote

    readers = [FsspecReader(fs, f"{directory}/{remote.check_shard_name(source, s)}", s, source=source)
               for s in shards]
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(readers))), thread_name_prefix="paramscope-s3") as pool:
        results = list(pool.map(lambda r: read_safetensors(r, source, r.name), readers))
    records: list[Any] = []
    owner: dict[str, str] = {}
    first: dict[str, Any] = {}
    for reader, (shard_records, meta, _) in zip(readers, results, strict=True):
        for record in shard_records:
            previous = owner.setdefault(record.name, reader.name)
            if previous != reader.name:
                raise ParamscopeError(source, f"{reader.name}: tensor {record.name!r} is also in shard {previous!r}")
        records.extend(shard_records)
        if not first and meta:
            first = {"__metadata__": meta}
    if progress is not None:
        progress(len(readers), len(readers), sum(r.fetched for r in readers))
    return records, owner, first, sum(r.fetched for r in readers)


def _read_prefix(fs: Any, path: str, url: str, progress: Any) -> Inventory:
    from paramscope.sources.safetensors import INDEX_SUFFIX

    entries = _listing(fs, path, url)
    names = sorted(_base(e["name"]) for e in entries)
    if not entries:
        raise ParamscopeError(url, "no such object, and no objects under it as a prefix")
    directory = path.rstrip("/")
    indexes = [n for n in names if n.endswith(INDEX_SUFFIX)]
    if len(indexes) > 1:
        raise ParamscopeError(url, f"{len(indexes)} safetensors indexes under the prefix: name one")
    if indexes:
        return _read_index(fs, f"{directory}/{indexes[0]}", url, progress)
    shards = [n for n in names if n.endswith(".safetensors")]
    if not shards:
        raise ParamscopeError(url, "no safetensors files or index under the prefix")
    records, _, first, fetched = _read_shards(fs, directory, shards, url, progress)
    metadata = {"shards": len(shards), **first, "fetched_bytes": fetched}
    inventory = Inventory(source=url, format=FORMAT, tensors=records, metadata=metadata,
                          notes=[_note(len(shards), fetched)])
    return _with_config(inventory, fs, directory, url, "config.json" in names)


def _with_config(inventory: Inventory, fs: Any, directory: str, url: str, present: bool | None = None) -> Inventory:
    """The prefix's ``config.json`` handed on to the rules (as beside local weights); a missing one is no error."""
    if present is False:
        return inventory
    from paramscope.sources.config import is_transformers_config

    try:
        raw = read_small(fs, f"{directory}/config.json", url, "config.json", MAX_CONFIG)
        config = json.loads(raw)
    except (ParamscopeError, ValueError, RecursionError):
        return inventory
    if isinstance(config, dict) and is_transformers_config(config):
        return inventory.replace(pending={**inventory.pending, "config": config})
    return inventory


def _note(files: int, fetched: int) -> str:
    return (f"Read {files} safetensors header(s) from an object store: {fetched:,} bytes fetched; "
            "no weights were downloaded.")


# ---- listing models under a prefix, for paramscope scan ---------------------------------------------


def list_models(url: str) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(source URL, object URLs, key) for each model under ``url``: a prefix holding an index, safetensors files
    with a config.json, or only shards named ``*-00001-of-00003.*`` is one model; other checkpoint objects are
    models of their own; prefixes
    below are listed in turn (breadth first, at most :data:`MAX_OBJECTS` objects in all). The key joins the
    objects' ETags, so a rerun with ``--cache`` reads only what changed. A single object URL is itself."""
    from paramscope.sources import CHECKPOINT_SUFFIXES, one_model

    fs, path = filesystem(url)
    scheme = url.split("://", 1)[0]
    if not url.endswith("/"):
        try:
            info = fs.info(path)
        except FileNotFoundError:
            info = None
        except Exception as exc:
            raise failure(url, "listing", exc) from None
        if info is not None and info.get("type") == "file":
            yield url, (url,), _etag(info)
            return
    queue, listed = [path.rstrip("/")], 0
    found_any = False
    while queue:
        directory = queue.pop(0)
        try:
            entries = fs.ls(directory, detail=True, refresh=True)
        except FileNotFoundError:
            entries = []
        except Exception as exc:
            raise failure(url, "listing", exc) from None
        listed += len(entries)
        if listed > MAX_OBJECTS:
            raise ParamscopeError(url, f"more than {MAX_OBJECTS:,} objects under the prefix")
        files = sorted((e for e in entries if e.get("type") == "file"), key=lambda e: e["name"])
        names = [_base(e["name"]) for e in files]
        full = [f"{scheme}://{e['name']}" for e in files]
        if one_model(names):  # the rule of a local tree (paramscope.scan.walk)
            keep = [(f, e) for f, e, n in zip(full, files, names, strict=True)
                    if n.endswith((".safetensors", ".safetensors.index.json")) or n == "config.json"]
            found_any = True
            yield (f"{scheme}://{directory}/", tuple(f for f, _ in keep),
                   "|".join(f"{_base(f)}:{_etag(e)}" for f, e in keep))
        else:
            for f, e, n in zip(full, files, names, strict=True):
                if n.endswith(CHECKPOINT_SUFFIXES):
                    found_any = True
                    yield f, (f,), _etag(e)
        queue.extend(sorted(e["name"].rstrip("/") for e in entries if e.get("type") == "directory"))
    if not found_any:
        raise ParamscopeError(url, "no checkpoint objects under the prefix")
