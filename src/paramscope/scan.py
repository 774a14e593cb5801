"""Many models, one row each: ``paramscope scan`` and the Python API :func:`scan`.

A target is expanded into models (:func:`expand`), each model read on a bounded pool of threads, and its
row (a plain dict of :data:`COLUMNS`) yielded in the order the models were found, as soon as it and the
rows before it are done: at most ``2 * workers`` models are in flight and nothing else is held, so a scan
of a million models takes the memory of a few.

Targets:

* a directory tree: every checkpoint found, grouped into models (:func:`walk`): a directory with a
  ``*.safetensors.index.json``, with shards named ``*-00001-of-00003.*``, or with safetensors weights and
  a ``config.json`` is one model (and is not searched further); a directory with a ``config.json`` and one
  checkpoint file is that file (the config applied); a ``config.json`` alone is its architecture; any other
  checkpoint file (by suffix: :data:`paramscope.sources.CHECKPOINT_SUFFIXES`) is a model of its own;
* ``hf:org/*`` or ``hf:org/glob*``: the organisation's Hub repositories (``huggingface_hub.list_models``);
  ``hf:*/glob``: a search of the whole Hub (by the glob's longest literal part, then matched by the glob);
* an object-store prefix (``s3://bucket/dir/``, ``gs://``, ``az://``, any fsspec URL ending in ``/``);
* ``@FILE``: a file of targets, one a line (``#`` starts a comment);
* anything else: one source, as ``paramscope SOURCE`` reads it.

A row never raises: a model that cannot be read has its error in the ``error`` column and ``None`` in the
figures. Strings from files and names are escaped (:func:`paramscope.text.safe`) before they enter a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from paramscope.errors import ParamscopeError, without_credentials

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

COLUMNS = ("source", "formats", "parameters", "active", "stored_bytes", "dtypes", "quantization", "tie_groups",
           "files", "safety", "safety_detail", "error")
"""A row's keys, in the order every output shows them. ``active``: parameters one token uses (MoE), else equal
to ``parameters``; ``stored_bytes``: storage of parameters, buffers and quantization bookkeeping, tie groups once;
``files``: files holding weights (shards; not the config or index);
``safety``: :mod:`paramscope.safety`'s verdict, ``safety_detail`` its one line."""
MEMORY_COLUMNS = ("inference_bytes", "training_bytes")
"""Added by ``memory=True``: :func:`paramscope.memory.estimate`'s inference (weights as stored + buffers) and
training total (AdamW, mixed bf16, one GPU)."""
INT_COLUMNS = frozenset({"parameters", "active", "stored_bytes", "tie_groups", "files", *MEMORY_COLUMNS})

OBJECT_STORE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""URLs; those of :data:`paramscope.sources.OBJECT_STORES` are fsspec's, http(s) the plain URL reader's."""


@dataclass(frozen=True, slots=True)
class Model:
    """One model to read: ``source`` as :func:`paramscope.sources.open_source` takes it; ``files``: what it is
    made of (local paths, object keys) for the verdict; ``key``: what changes when the model does (size and
    mtime of its files, ETags, the Hub commit), None when nothing cheap says so; ``error``: why it could not
    even be listed."""

    source: str
    files: tuple[str, ...] = ()
    key: str | None = None
    error: str | None = None


# ---- targets -> models ----------------------------------------------------------------------------


def expand(target: str, *, depth: int = 0) -> Iterator[Model]:
    """The models a target names (see the module docstring), lazily: a tree or a listing is walked as rows go out."""
    if "\0" in target:  # no path or URL holds one (os.stat raises ValueError on it); a list file may
        yield Model(target, error="a name with a NUL byte names nothing")
    elif target.startswith("@") and depth == 0:
        yield from _from_list(target[1:])
    elif target.startswith("hf:") and "*" in target:
        yield from _hub_models(target)
    elif _is_object_store(target):
        from paramscope.sources import objectstore

        try:
            yield from (Model(s, f, k) for s, f, k in objectstore.list_models(target))
        except ParamscopeError as exc:
            yield Model(target, error=exc.reason)
    elif os.path.isdir(target):
        yield from walk(Path(target))
    else:
        yield Model(target, (target,) if os.path.isfile(target) else (), _stat_key([target]))


def _is_object_store(text: str) -> bool:
    from paramscope.sources import OBJECT_STORES

    return bool(OBJECT_STORE.match(text)) and text.split("://", 1)[0].lower() in OBJECT_STORES


MAX_LINE = 64 << 10
"""Longest line of a list of targets or of a cache file: a path or URL is far shorter, and /dev/zero-like
input (one endless line) must end in an error, not in all the memory there is."""


def _lines(handle: Any, name: str, what: str) -> Iterator[bytes]:
    """``handle``'s lines, each at most :data:`MAX_LINE` bytes (a longer one is refused, naming ``name``)."""
    while line := handle.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            raise ParamscopeError(name, f"{what} has a line longer than {MAX_LINE:,} bytes")
        yield line


def _open_regular(name: str, what: str) -> Any:
    """``name`` opened for reading, refused unless it is a regular file: a FIFO would wait for a writer for
    ever and a device (/dev/zero) never ends."""
    from paramscope.sources.files import open_regular

    try:
        return open_regular(name)
    except ParamscopeError as exc:
        raise ParamscopeError(name, f"cannot read {what}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise ParamscopeError(name, f"cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def _from_list(name: str) -> Iterator[Model]:
    with _open_regular(name, "the list of sources") as handle:
        for raw in _lines(handle, name, "the list of sources"):
            line = raw.decode("utf-8", "surrogateescape").strip()
            if line and not line.startswith("#"):
                yield from expand(line, depth=1)


def _stat_key(paths: Iterable[str]) -> str | None:
    parts = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # ValueError: a NUL byte in the name
            return None
        parts.append([os.fspath(path), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode("utf-8", "surrogateescape")).hexdigest()


def walk(root: Path) -> Iterator[Model]:
    """The models of a directory tree, directory by directory in name order (symbolic links not followed)."""
    from paramscope.sources import CHECKPOINT_SUFFIXES, one_model

    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            yield Model(str(directory), error=f"cannot list: {exc.strerror or exc}")
            continue
        files = [e for e in entries if e.is_file(follow_symlinks=False)]
        names = [e.name for e in files]
        weights = [e.path for e in files if e.name.endswith(CHECKPOINT_SUFFIXES)]
        config = "config.json" in names
        if one_model(names) or (config and not weights):
            listed = [*weights, *([str(directory / "config.json")] if config else [])]
            yield Model(str(directory), tuple(listed), _stat_key(listed))
            continue  # a model's directory is not searched further
        if config and len(weights) == 1:
            listed = [weights[0], str(directory / "config.json")]
            yield Model(weights[0], tuple(listed), _stat_key(listed))
        else:
            for path in weights:
                yield Model(path, (path,), _stat_key([path]))
        stack.extend(reversed([Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]))


MAX_HUB_GLOB = 256
"""Characters of an ``hf:ORG/GLOB`` target, at most: 100,000 '[' made fnmatch run past a minute per repository."""


def _hub_models(target: str) -> Iterator[Model]:
    """``hf:org/*``, ``hf:org/prefix*``: the organisation's repositories; ``hf:*/glob``: a search; through
    ``list_models``."""
    import fnmatch

    from paramscope.errors import require

    body = target[len("hf:"):]
    org, _, pattern = body.partition("/")
    if len(body) > MAX_HUB_GLOB:  # fnmatch translates an unclosed '[' by scanning to the end: quadratic
        yield Model(target, error=f"a Hub pattern of {len(body):,} characters; at most {MAX_HUB_GLOB} (a repository "
                                  "id is at most 96)")
        return
    search = max(re.split(r"[*?\[\]]", pattern), key=len) or None  # the longest literal part: the Hub's search
    if not org or not pattern or ("*" in org and (org != "*" or search is None)):
        yield Model(target, error="give 'hf:ORG/*', 'hf:ORG/PATTERN*' or 'hf:*/PATTERN' (a search: PATTERN "
                                  "needs some text)")
        return
    try:
        hub = require("huggingface_hub", extra="hub", source=target, purpose="listing Hub repositories")
        api = hub.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
        for info in api.list_models(author=None if org == "*" else org, search=search):
            repo = getattr(info, "id", None) or getattr(info, "modelId", "")
            if fnmatch.fnmatchcase(repo.partition("/")[2], pattern):
                sha = getattr(info, "sha", None)
                yield Model(f"hf:{repo}", key=f"hf:{repo}@{sha}" if sha else None)
    except ParamscopeError as exc:
        yield Model(target, error=exc.reason)
    except Exception as exc:  # huggingface_hub's HTTP and parse errors: the listing failed, said in its row
        from paramscope.text import one_line

        yield Model(target, error=f"listing failed: {one_line(type(exc).__name__ + ': ' + str(exc), 300)}")


def shard_of(source: str, n: int) -> int:
    """Which of ``n`` shards a source belongs to: a stable hash (sha256), the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(source.encode("utf-8", "surrogateescape")).digest()[:8], "big") % n


# ---- a model -> its row -----------------------------------------------------------------------------


def empty_row(source: str, memory: bool = False) -> dict[str, Any]:
    from paramscope.text import safe

    row: dict[str, Any] = dict.fromkeys(COLUMNS + (MEMORY_COLUMNS if memory else ()))
    row["source"] = safe(without_credentials(source))
    return row


def read_row(model: Model, *, memory: bool = False, debug: bool = False) -> dict[str, Any]:
    """One model's row. Never raises for a bad model (``debug``: an internal error is raised, for --debug)."""
    from paramscope.text import one_line, safe

    row = empty_row(model.source, memory)
    if model.error is not None:
        row["error"] = one_line(safe(model.error), 500)
        return row
    try:
        _fill(row, model, memory)
    except ParamscopeError as exc:
        row["error"] = one_line(safe(exc.reason), 500)
    except (MemoryError, RecursionError) as exc:
        row["error"] = f"too large or too deeply nested to read ({type(exc).__name__})"
    except Exception as exc:  # one model's bug must not lose the other rows; it is said as such
        if debug:
            raise
        row["error"] = one_line(safe(f"internal error: {type(exc).__name__}: {exc}"), 500)
    if row["safety"] is None:
        _verdict(row, model)
    return row


def _fill(row: dict[str, Any], model: Model, memory: bool) -> None:
    from paramscope.pipeline import one_model, settle
    from paramscope.report import Report
    from paramscope.sources import open_source
    from paramscope.text import safe

    inventory = open_source(model.source)  # pipeline.inspect, in two steps: the config is seen before the rules
    config = inventory.pending.get("config")
    report = one_model(Report(settle(inventory)))
    from paramscope import safety

    if isinstance(config, dict) and config.get("auto_map") and not os.path.exists(model.source):
        verdict = safety.config_dict_verdict(config)  # a remote model's remote code (a local one's is read below)
        row["safety"], row["safety_detail"] = verdict.verdict, verdict.line()
    elif os.path.isfile(model.source):  # read: a pickle has passed the allow-list already, not run again
        verdict = safety.after_read(Path(model.source), report.format, report.metadata)
        row["safety"], row["safety_detail"] = verdict.verdict, verdict.line()
    quant = report.metadata.get("quantization")
    row.update(
        formats=safe(str(report.format)),
        parameters=report.total,
        active=report.active if report.active is not None else report.total,
        stored_bytes=report.bytes,
        dtypes=",".join(safe(str(d.dtype)) for d in report.by_dtype),
        quantization=_quantization(quant),
        tie_groups=len(report.ties),
        files=_weight_files(model, report),
    )
    if memory:
        from paramscope.memory import estimate

        figures = estimate(report)
        row["inference_bytes"] = figures.inference_stored
        row["training_bytes"] = figures.training_total


def _weight_files(model: Model, report: Any) -> int:
    """Files holding weights (a config or an index is not counted): those listed, else the shards read."""
    listed = sum(1 for f in model.files if not f.endswith(".json"))
    return listed or int(report.metadata.get("shards") or 1)


def _quantization(summary: Any) -> str | None:
    from paramscope.text import safe

    if not isinstance(summary, dict) or not summary.get("scheme"):
        return None
    bits = summary.get("bits")
    shown = f"{bits:g}" if isinstance(bits, (int, float)) else "/".join(f"{b:g}" for b in bits or [])
    return safe(f"{summary['scheme']} {shown}-bit".strip() if shown else str(summary["scheme"]))


def _verdict(row: dict[str, Any], model: Model) -> None:
    from paramscope import safety

    if OBJECT_STORE.match(model.source) or model.source.startswith("hf:"):
        verdict = _remote_verdict(model, row)
    elif model.files:
        verdict = safety.combine(safety.file_verdict(Path(f)) for f in model.files)
    elif os.path.exists(model.source):
        verdict = safety.path_verdict(Path(model.source))
    else:
        verdict = safety.Verdict(safety.UNREADABLE, "not a local file: nothing to check")
    row["safety"] = verdict.verdict
    row["safety_detail"] = verdict.line()


def _remote_verdict(model: Model, row: dict[str, Any]) -> Any:
    """Remote models are read from safetensors (or GGUF) headers only: safe by construction where that is what
    was read; a Hub repository's pickles are judged from their data.pkl, fetched by range and never run."""
    from paramscope import safety

    formats = row.get("formats") or ""
    configs = [f for f in model.files if f.endswith("/config.json")]
    if configs and _is_object_store(model.source):
        from paramscope.sources import objectstore

        try:
            fs, path = objectstore.filesystem(configs[0])
            raw = objectstore.read_small(fs, path, model.source, "config.json", objectstore.MAX_CONFIG)
        except ParamscopeError as exc:
            return safety.Verdict(safety.UNREADABLE, exc.reason)
        config = safety.config_text_verdict(raw)
        if config.verdict != safety.SAFE:
            return config
    if model.source.startswith("hf:") and not formats.startswith(("safetensors", "gguf")):
        pickles = safety.remote_verdict(model.source)  # data.pkl by ranged reads, never run
        if pickles is not None:
            return pickles
    if formats.startswith("safetensors"):
        return safety.Verdict(safety.SAFE, safety.SAFE_FORMATS["safetensors"])
    if formats.startswith("gguf"):
        return safety.Verdict(safety.SAFE, safety.SAFE_FORMATS["gguf"])
    return safety.Verdict(safety.UNREADABLE, "remote file not checked (only safetensors and GGUF are safe unseen)")


# ---- the cache ----------------------------------------------------------------------------------


def _checked_row(row: Any) -> dict[str, Any] | None:
    """A row read back from a cache file, as :func:`read_row` would have made it, else None (read again): the
    file is input like any other, so counts must be counts and strings are escaped again."""
    from paramscope.text import safe

    if not isinstance(row, dict):
        return None
    out: dict[str, Any] = {}
    for column in (*COLUMNS, *MEMORY_COLUMNS):
        value = row.get(column)
        if column in INT_COLUMNS:
            if value is not None and (type(value) is not int or not 0 <= value < 1 << 80):
                return None
        elif value is not None:
            if not isinstance(value, str):
                return None
            value = safe(value)
        out[column] = value
    return out


class Cache:
    """Rows by source, in a JSON Lines file (``{"source", "key", "row"}`` a line, the last line of a source
    winning). Only each source's key and its line's offset are held; a row is read back when it is used.
    New rows are appended (and flushed) as they are made, so an interrupted scan resumes where it stopped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.index: dict[str, tuple[str | None, int]] = {}
        if os.path.lexists(path):
            with _open_regular(path, "the cache") as handle:
                offset = 0
                for line in _lines(handle, path, "the cache"):
                    try:
                        entry = json.loads(line)
                        key = entry.get("key")
                        if isinstance(entry["source"], str) and (key is None or isinstance(key, str)):
                            self.index[entry["source"]] = (key, offset)
                    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                        pass  # a line cut short by an interrupted run (or not ours): that source is read again
                    offset += len(line)
        try:
            self._out = open(path, "ab")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ParamscopeError(path, f"cannot write the cache: {exc.strerror or exc}") from None

    def get(self, model: Model, *, trust: bool) -> dict[str, Any] | None:
        """The cached row of ``model`` when its key is unchanged (``trust``: whatever the key; --resume)."""
        found = self.index.get(model.source)
        if found is None or (not trust and (model.key is None or found[0] != model.key)):
            return None
        with open(self.path, "rb") as handle:
            handle.seek(found[1])
            try:
                row = json.loads(handle.readline(MAX_LINE + 1))["row"]
            except (ValueError, KeyError, TypeError, RecursionError):
                return None
        return _checked_row(row)

    def put(self, model: Model, row: dict[str, Any]) -> None:
        if row.get("error") is not None or model.key is None:
            return  # a failure is tried again next time; a model without a key cannot be checked for change
        line = json.dumps({"source": model.source, "key": model.key, "row": row}, ensure_ascii=True) + "\n"
        self._out.write(line.encode())
        self._out.flush()

    def close(self) -> None:
        self._out.close()


# ---- the scan ---------------------------------------------------------------------------------------


def models(targets: Iterable[str], *, shard: tuple[int, int] | None = None) -> Iterator[Model]:
    """Every target's models, in order, each once, only those of shard ``(i, n)`` when given."""
    seen: set[str] = set()
    for target in targets:
        for model in expand(target):
            if shard is not None and shard_of(model.source, shard[1]) != shard[0]:
                continue
            if model.source in seen:
                continue
            seen.add(model.source)
            yield model


WORKER_MODULES = ("typing", "paramscope.pipeline", "paramscope.report", "paramscope.architecture",
                  "paramscope.safety", "paramscope.sources.files")
"""Imported before the worker threads start. A module the workers import lazily could otherwise be half
initialised in one thread while another uses it: ``dataclasses`` looks ``typing`` up in ``sys.modules``
without the import lock, and a class defined while another thread is importing ``typing`` fails with
"partially initialized module 'typing' has no attribute 'ClassVar'"."""


def _import_before_threads(memory: bool) -> None:
    import importlib

    for name in (*WORKER_MODULES, *(("paramscope.memory",) if memory else ())):
        importlib.import_module(name)


def scan(
    sources: Iterable[str],
    *,
    workers: int = 4,
    memory: bool = False,
    cache: str | None = None,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    debug: bool = False,
    on_row: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of every model the ``sources`` (targets) name, in the order found; see the module docstring.

    ``workers`` threads read models (at most ``2 * workers`` in flight); ``cache``: a JSON Lines file of rows
    reused while their key is unchanged (``resume``: reused whatever the key, for an interrupted run);
    ``shard=(i, n)``: only the models whose stable hash is ``i`` modulo ``n``; ``on_row(done)`` after each row.
    """
    from concurrent.futures import ThreadPoolExecutor

    if workers < 1:
        raise ValueError("workers must be 1 or more")
    _import_before_threads(memory)
    store = Cache(cache) if cache else None
    window: deque[Any] = deque()
    done = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paramscope-scan") as pool:
            for model in models(sources, shard=shard):
                cached = store.get(model, trust=resume) if store is not None else None
                if cached is not None:
                    window.append((model, None, cached))
                else:
                    window.append((model, pool.submit(read_row, model, memory=memory, debug=debug), None))
                while len(window) > 2 * workers or (window and _ready(window[0])):
                    done += 1
                    yield _finish(window.popleft(), store, memory)
                    if on_row is not None:
                        on_row(done)
            while window:
                done += 1
                yield _finish(window.popleft(), store, memory)
                if on_row is not None:
                    on_row(done)
    finally:
        for _, future, _ in window:
            if future is not None:
                future.cancel()
        if store is not None:
            store.close()


def _ready(entry: tuple[Model, Any, Any]) -> bool:
    return entry[1] is None or entry[1].done()


def _finish(entry: tuple[Model, Any, Any], store: Cache | None, memory: bool) -> dict[str, Any]:
    model, future, cached = entry
    if future is None:
        row = empty_row(model.source, memory)
        row.update({k: v for k, v in cached.items() if k in row})
        return row
    row = future.result()
    if store is not None:
        store.put(model, row)
    return row


# ---- gates -----------------------------------------------------------------------------------------

FAIL_ON = ("error", "unsafe", "unknown", "none")
"""--fail-on conditions: ``error`` (the row could not be read), ``unsafe`` (needs-trust or code), ``unknown``
(no verdict: unreadable), ``none`` (never: report only)."""


def failures(row: dict[str, Any], fail_on: Iterable[str], max_params: int | None = None,
             max_bytes: int | None = None) -> list[str]:
    """Why ``row`` fails the CI gates (empty: it passes)."""
    why = []
    conditions = set(fail_on)
    if "error" in conditions and row.get("error") is not None:
        why.append("error")
    if "unsafe" in conditions and row.get("safety") in ("needs-trust", "code"):
        why.append("unsafe")
    if "unknown" in conditions and row.get("safety") == "unreadable":
        why.append("unknown")
    if max_params is not None and (row.get("parameters") or 0) > max_params:
        why.append("max-params")
    if max_bytes is not None and (row.get("stored_bytes") or 0) > max_bytes:
        why.append("max-bytes")
    return why


def dask_rows(sources: Iterable[str], client: Any, *, memory: bool = False,
              shard: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """The Dask recipe: list the models here, read each on the cluster (``client.map(read_row, ...)``), and
    gather the rows in the order found; the same rows as :func:`scan` (and ``paramscope scan``)."""
    found = list(models(sources, shard=shard))
    futures = client.map(read_row, found, memory=memory, pure=False)
    return client.gather(futures)
