"""Source: a Hugging Face Hub repository, ``hf:org/name[@revision]`` (or a bare ``org/name``), headers only.

What is fetched, in order, and nothing else:

1. ``config.json`` and ``model.safetensors.index.json``, in parallel, through ``hf_hub_download``: small
   files, which it caches, and serves from the cache when offline.
2. With an index, the header of every shard it names, by ranged reads (:mod:`paramscope.sources.remote`),
   the first read sized from the tensor names the index lists for that shard; without one, the header
   of ``model.safetensors``. A shard already in the local cache is read from disk with no request.
3. With neither, the repository's file listing (``/api/models/<repo>/revision/<rev>``, one request) says
   what else it holds: ``pytorch_model.bin.index.json`` and its shards, or ``pytorch_model.bin``, read by
   ranged reads of each zip's end records, directory and data.pkl; else its GGUF files: one model (a file,
   or every part of a split one) is read, several (a repository of quantizations) are listed, each with its
   size, quantization and parameters from its header, for the user to name one.
4. With none of these, the architecture is built on the meta device from ``config.json``
   (``paramscope.sources.config``), with a note saying so.

``hf:org/name[@rev]:FILE`` (or ``--file FILE``) reads that one file (a GGUF, every part of a split one, a
``.bin``/``.pt``, a safetensors file, an index) and nothing else but config.json.

The repository's ``config.json`` is handed on with the headers (``Inventory.pending["config"]``): the
rules stage, :func:`paramscope.pipeline.settle`, applies it (quantization, MoE, ties); this reader never
does. The environment is read at call time, not when
huggingface_hub was imported: ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``, ``HF_HOME`` /
``HF_HUB_CACHE``, so that a long-lived process (or a test) can change them.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from paramscope.errors import ParamscopeError, require
from paramscope.records import Inventory
from paramscope.sources import remote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.sources.remote import Progress

FORMAT = "safetensors"
GGUF_LISTING = "gguf-listing"
"""The format of what a repository of several GGUF files reads as, when no file is named: the listing."""
PREFIX = "hf:"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO = re.compile(rf"^(?:{_NAME}/)?{_NAME}$")
_BARE = re.compile(rf"^{_NAME}/{_NAME}(?:@[^\s@]+)?$")
# A bare "dir/file.ext" that does not exist is a mistyped path, not a repository: never go online for it.
_FILE_SUFFIXES = (".safetensors", ".json", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".npz", ".npy",
                  ".h5", ".keras", ".py", ".pkl", ".msgpack", ".txt")
_TRUE = frozenset({"1", "on", "yes", "true"})
_COMMIT = re.compile(r"[0-9a-f]{40}")
_DIGEST = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git blob id or a sha256: the Hub's ETags
# A ref name that stays a path below refs/: parts of letters, digits, "_", "-" and ".", none of them "." or "..".
_REF = re.compile(r"(?!\.\.?(?:/|$))[A-Za-z0-9_.-]+(?:/(?!\.\.?(?:/|$))[A-Za-z0-9_.-]+)*")


def looks_like_repo(text: str) -> bool:
    """A bare ``org/name[@revision]`` that could be a Hub repository (the caller checked that no such
    local path exists and that it is not a ``module:Name`` spec)."""
    if not _BARE.match(text):
        return False
    repo = text.partition("@")[0]
    return not repo.lower().endswith(_FILE_SUFFIXES) and ".." not in repo and "--" not in repo


def split_file(text: str) -> tuple[str, str | None]:
    """``hf:org/name[@rev]:file.gguf`` -> (``hf:org/name[@rev]``, ``file.gguf``); (text, None) without a file.
    A ref name cannot hold ":" (git check-ref-format), so the first ":" after the prefix starts the file."""
    if not text.startswith(PREFIX):
        return text, None
    body, colon, filename = text[len(PREFIX) :].partition(":")
    if not colon:
        return text, None
    try:
        remote.check_shard_name(text, filename)
    except ParamscopeError as exc:
        raise ParamscopeError(text, f"file {filename[:80]!r}: {exc.reason}") from None
    return PREFIX + body, filename


def parse(text: str) -> tuple[str, str | None]:
    """``hf:org/name@rev`` or ``org/name@rev`` -> (repo id, revision or None)."""
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    repo, at, revision = body.partition("@")
    if not _REPO.match(repo) or ".." in repo or "--" in repo:
        raise ParamscopeError(text, f"{repo!r} is not a Hugging Face repository id (org/name)")
    if at and (not revision or any(c.isspace() for c in revision) or ".." in revision):
        raise ParamscopeError(text, f"{revision!r} is not a revision (a branch, tag or commit)")
    return repo, revision or None


class _Env:
    """The Hub settings of this call, read from the environment now, huggingface_hub's constants second."""

    def __init__(self, constants: Any) -> None:
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        self.offline = flag.strip().lower() in _TRUE if flag is not None else bool(constants.HF_HUB_OFFLINE)
        if os.environ.get("HF_HUB_CACHE"):
            self.cache_dir = os.environ["HF_HUB_CACHE"]
        elif os.environ.get("HF_HOME"):
            self.cache_dir = os.path.join(os.environ["HF_HOME"], "hub")
        else:
            self.cache_dir = constants.HF_HUB_CACHE


def _small_limits() -> dict[str, int]:
    from paramscope.sources.config import MAX_CONFIG_BYTES

    return {CONFIG_FILE: MAX_CONFIG_BYTES, INDEX_FILE: remote.MAX_INDEX_SIZE, TORCH_INDEX_FILE: remote.MAX_INDEX_SIZE}


TORCH_INDEX_FILE = "pytorch_model.bin.index.json"
TORCH_SINGLE_FILE = "pytorch_model.bin"
MAX_LISTING_BYTES = 16 << 20
"""Bytes of the Hub's file listing of one repository (``/api/models/<repo>/revision/<rev>``)."""
MAX_LISTED_FILES = 100_000
LISTED_FIELDS = ("file", "parts", "quantization", "bytes", "elements", "tensor_bytes", "bits_per_weight", "tensors",
                 "data_offset", "error")
"""The fields of a listing's row (``metadata["gguf.files"]``); the rules stage adds ``parameters``."""
MAX_LISTED_GGUF = 64
"""GGUF models whose headers a repository listing reads (a real repository holds a dozen or two)."""


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.incomplete")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _link(blob: Path, pointer: Path) -> None:
    """``pointer`` -> ``blob`` as a relative symlink, as huggingface_hub makes them; a copy where symlinks
    are not allowed."""
    if pointer.is_file():
        return
    temporary = pointer.with_name(f"{pointer.name}.{os.getpid()}.{threading.get_ident()}.incomplete")
    try:
        try:
            temporary.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:
            temporary.write_bytes(blob.read_bytes())
        os.replace(temporary, pointer)
    finally:
        temporary.unlink(missing_ok=True)


_KINDS = {FORMAT: "safetensors", "gguf": "GGUF", "pytorch": "PyTorch zip", GGUF_LISTING: "GGUF"}


class NotCached(ParamscopeError):
    """Offline, and a file that would be read is not in the cache."""


class _Missing:
    """Marks a small file that offline mode could not find in the cache."""


OFFLINE_MISSING = _Missing()


def read(text: str, progress: Progress | None = None, filename: str | None = None) -> Inventory:
    """The Inventory of a Hub repository, from config.json and the weights' headers only (safetensors; else
    PyTorch .bin zips; else GGUF files), or of one file of it (``hf:org/name:file.gguf`` or ``filename``)."""
    hub, filename = _connect(text, filename)
    fetcher, env = hub.fetcher, hub.env
    from concurrent.futures import ThreadPoolExecutor

    # One pool for the whole call: config.json downloads on it while the index is fetched here and its
    # shards are read; the config is needed only at the end.
    with ThreadPoolExecutor(max_workers=remote.WORKERS, thread_name_prefix="paramscope-hub") as pool:
        config_future = pool.submit(hub.download, CONFIG_FILE)
        try:
            if filename is not None:
                inventory, headers_read = hub.named_file(filename, pool, progress)
            else:
                inventory, headers_read = _read_weights(hub, pool, progress, config_future)
            config = hub.load_config(config_future.result())
        finally:
            config_future.cancel()
    metadata = {**inventory.metadata, "fetched_bytes": fetcher.fetched_bytes, "requests": fetcher.requests}
    notes = list(inventory.notes)
    if env.offline:
        notes.append("Offline (HF_HUB_OFFLINE): everything was read from the local Hugging Face cache.")
    elif headers_read:
        notes.append(remote.fetched_note(fetcher, headers_read, _KINDS.get(inventory.format, inventory.format)))
    pending = inventory.pending
    if inventory.format in (FORMAT, "pytorch") and config is not None:  # the rules stage applies the config
        pending = {**pending, "config": config}
    return inventory.replace(metadata=metadata, notes=notes, pending=pending)


def _connect(text: str, filename: str | None = None) -> tuple[_Hub, str | None]:
    """The repository ``text`` names (and the file, from ``hf:org/name:FILE`` or ``filename``), with this
    call's settings and a fetcher; nothing is requested yet."""
    text, named = split_file(text)
    filename = filename or named
    repo_id, revision = parse(text)
    source = PREFIX + repo_id + (f"@{revision}" if revision else "")
    if os.environ.get("HF_ENDPOINT"):  # checked before huggingface_hub is imported: it parses it on import
        try:
            remote.check_url(os.environ["HF_ENDPOINT"])
        except ValueError as exc:
            raise ParamscopeError(source, f"HF_ENDPOINT {os.environ['HF_ENDPOINT']!r}: {exc}") from None
    require("huggingface_hub", extra="hub", source=source, purpose="reading from the Hugging Face Hub")
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    env = _Env(constants)
    fetcher = remote.Fetcher(remote.HttpxTransport(get_session()), _headers(source, constants.HF_TOKEN_PATH))
    return _Hub(source, repo_id, revision, env, fetcher), filename


def pickle_files(text: str) -> list[Any]:
    """The torch.save files (pickles) that reading ``text`` reads, for their safety verdict
    (:func:`paramscope.safety.remote_verdict`): the named file, or the shards a PyTorch index names, or
    ``pytorch_model.bin`` where the repository has no safetensors weights; each a RangeReader over HTTP (a
    cached file: its Path). [] where what is read holds no pickle (safetensors, GGUF, a config)."""
    hub, filename = _connect(text)
    names = hub.pickle_names(filename)
    jobs = [hub.job(name, hub.revision, 0) for name in names]
    return [Path(job.local) if job.local is not None else
            remote.HttpRangeReader(hub.fetcher, hub.source, job.name, job.url)  # type: ignore[arg-type]
            for job in jobs]


def _read_weights(hub: _Hub, pool: Any, progress: Progress | None, config_future: Any) -> tuple[Inventory, int]:
    """The headers of the index's shards, or of model.safetensors, or (neither) the config's architecture;
    and how many headers came over the network."""
    source, fetcher = hub.source, hub.fetcher
    index_path = hub.download(INDEX_FILE)
    commit = _commit_of(index_path)
    pinned = commit or hub.revision
    metadata: dict[str, Any] = {"repository": hub.repo_id, "revision": hub.revision or "main"}
    if commit:
        metadata["commit"] = commit
    notes: list[str] = []
    if isinstance(index_path, Path):
        raw = _read_local(source, index_path, remote.MAX_INDEX_SIZE, "index")
        weight_map, estimates, data_size = remote.plan_index(source, raw)
        jobs = [hub.job(shard, pinned, first) for shard, first in estimates.items()]
        records, found, found_notes = remote.read_index_shards(
            fetcher, source, weight_map, jobs, data_size, progress, pool
        )
        metadata.update(found)
        notes += found_notes
        inventory = Inventory(source=source, format=FORMAT, tensors=records, metadata=metadata, notes=notes)
        return inventory, sum(job.local is None for job in jobs)
    config_path = config_future.result()
    config = hub.load_config(config_path)  # for the fallback, and its commit
    config_commit = _commit_of(config_path)
    pinned = pinned or config_commit
    if "commit" not in metadata and config_commit:
        metadata["commit"] = config_commit
    inventory = hub.single_file(pinned, pool, progress, metadata, notes, config)
    return inventory, hub.headers_read


MAX_TOKEN_FILE = 1 << 20
"""Bytes of the saved token file (``HF_TOKEN_PATH``, ``$HF_HOME/token``): a token is tens of bytes."""


def _headers(source: str, token_path: str) -> dict[str, str]:
    """The token (``HF_TOKEN`` or the saved one) and a user agent. Not ``build_hf_headers``: to name the
    agent it may fetch a registry from the Hub, a request outside our deadlines. The saved token file is
    read by huggingface_hub with a plain ``read_text``: it is checked first to be a small regular file (a
    FIFO there would block the read forever, /dev/zero would fill memory), and its errors name ``source``."""
    from huggingface_hub import get_token

    from paramscope.sources.files import describe_mode
    from paramscope.version import __version__

    headers = {"User-Agent": f"paramscope/{__version__}"}
    try:
        saved = os.stat(token_path)
    except OSError:  # no saved token (or HF_HOME is not a directory: get_token says so below)
        saved = None
    if saved is not None and (kind := describe_mode(saved.st_mode)) is not None:
        raise ParamscopeError(source, f"the Hugging Face token file {token_path} is {kind}, not a regular file")
    if saved is not None and saved.st_size > MAX_TOKEN_FILE:
        raise ParamscopeError(source, f"the Hugging Face token file {token_path} is {saved.st_size:,} bytes; "
                                      f"a token is at most {MAX_TOKEN_FILE:,}")
    try:
        token = get_token()
    except OSError as exc:
        raise ParamscopeError(source, f"cannot read the Hugging Face token file {token_path}: "
                                      f"{exc.strerror or exc}") from None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _commit_of(path: Any) -> str | None:
    """The commit a cached file belongs to: ``.../snapshots/<commit>/<file>``."""
    if isinstance(path, Path) and path.parent.parent.name == "snapshots":
        return path.parent.name
    return None


def _read_local(source: str, path: Path, limit: int, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise ParamscopeError(source, f"{what} is {size:,} bytes, more than the {limit:,} allowed")
        return path.read_bytes()
    except OSError as exc:
        raise ParamscopeError(source, f"cannot read the cached {what}: {exc.strerror or exc}") from None


class _Hub:
    """One repository at one revision: downloads of small files, shard jobs, error wording."""

    def __init__(self, source: str, repo_id: str, revision: str | None, env: _Env, fetcher: remote.Fetcher):
        self.source = source
        self.repo_id = repo_id
        self.revision = revision
        self.env = env
        self.fetcher = fetcher
        self.headers_read = 0  # by single_file: how many headers came over the network

    def download(self, filename: str) -> Path | _Missing | None:
        """A small file of the repository (config.json, the index) into the Hugging Face cache, or None where
        the repository has none; offline, the cached copy (:data:`OFFLINE_MISSING` when there is none).

        Fetched here, not by ``hf_hub_download``: one request through :func:`remote.fetch_file`, refused
        from its declared size past :func:`_small_limits` before any of it is downloaded, under the
        fetcher's deadlines and retries (huggingface_hub's own would wait a minute and more, retry five
        times and log each retry on stderr). The cache is written in huggingface_hub's layout (blob,
        snapshot link, ref), so that it and offline runs find the file."""
        from huggingface_hub import hf_hub_url, try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo_id, filename, cache_dir=self.env.cache_dir, revision=self.revision)
        if self.env.offline:
            if isinstance(cached, str):
                return Path(cached)
            return None if cached is not None else OFFLINE_MISSING  # a cached "does not exist" is an answer
        if isinstance(cached, str) and self.revision is not None and _COMMIT.fullmatch(self.revision):
            return Path(cached)  # a commit never changes: no request
        url = hf_hub_url(self.repo_id, filename, revision=self.revision, endpoint=self.env.endpoint)
        try:
            limit = _small_limits().get(filename, remote.MAX_INDEX_SIZE)  # an index by another name
            got = remote.fetch_file(self.fetcher, self.source, filename, url, limit)
        except remote.HTTPStatusError as exc:
            return self._refused(filename, exc)
        except ParamscopeError:
            if isinstance(cached, str):  # the Hub cannot be reached: the cached copy, as huggingface_hub does
                return Path(cached)
            raise
        return self._store(filename, got)

    def _refused(self, filename: str, exc: remote.HTTPStatusError) -> None:
        """None for a file the repository does not have; the Hub's other refusals as one line."""
        code = exc.headers.get("x-error-code", "")
        if code == "EntryNotFound" or (exc.status == 404 and not code):
            self._remember_missing(filename, exc.headers)
            return None
        if code == "RevisionNotFound":
            raise ParamscopeError(self.source, f"revision {self.revision!r} not found")
        if code == "GatedRepo":
            raise ParamscopeError(self.source, "authentication required (set HF_TOKEN): the repository is gated")
        if code == "RepoNotFound" or (exc.status == 404 and code != "EntryNotFound"):
            raise ParamscopeError(self.source, "repository not found (if it is private or gated, set HF_TOKEN)")
        if exc.status in (401, 403):
            raise ParamscopeError(self.source, f"{filename}: authentication required (set HF_TOKEN)")
        raise exc

    def _storage(self) -> Path:
        return Path(self.env.cache_dir) / ("models--" + self.repo_id.replace("/", "--"))

    def _commit(self, filename: str, headers: dict[str, str]) -> str | None:
        commit = headers.get("x-repo-commit", "").strip()
        if _COMMIT.fullmatch(commit):
            return commit
        if self.revision is not None and _COMMIT.fullmatch(self.revision):
            return self.revision
        return None

    def _store(self, filename: str, got: remote.Fetched) -> Path:
        """Write a fetched file into the cache: ``blobs/<etag>``, ``snapshots/<commit>/<file>`` linking to
        it, ``refs/<revision>`` naming the commit. Names from the response are used only when they are the
        hex digests the Hub sends (a hostile server cannot write outside the cache)."""
        import hashlib

        commit = self._commit(filename, got.first_headers)
        if commit is None:
            raise ParamscopeError(
                self.source, f"{filename}: the server did not say which commit it served (no X-Repo-Commit): "
                f"{self.env.endpoint} does not look like a Hugging Face Hub"
            )
        first = got.first_headers
        etag = (first.get("x-linked-etag") or first.get("etag") or "").strip().removeprefix("W/").strip('"')
        if not _DIGEST.fullmatch(etag):
            etag = hashlib.sha256(got.body).hexdigest()
        storage = self._storage()
        blob = storage / "blobs" / etag
        pointer = storage / "snapshots" / commit / filename
        try:
            blob.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(blob, got.body)
            pointer.parent.mkdir(parents=True, exist_ok=True)
            _link(blob, pointer)
            self._remember_ref(storage, commit)
        except OSError as exc:
            raise ParamscopeError(
                self.source, f"cannot write the Hugging Face cache {self.env.cache_dir}: {exc.strerror or exc}"
            ) from None
        return pointer

    def _remember_ref(self, storage: Path, commit: str) -> None:
        revision = self.revision or "main"
        if revision != commit and _REF.fullmatch(revision):  # a ref name that stays a path below refs/
            ref = storage / "refs" / revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(ref, commit.encode())

    def _remember_missing(self, filename: str, headers: dict[str, str]) -> None:
        """``.no_exist/<commit>/<file>``: what huggingface_hub writes so that offline runs know."""
        commit = self._commit(filename, headers)
        if commit is None:
            return
        storage = self._storage()
        try:
            marker = storage / ".no_exist" / commit / filename
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            self._remember_ref(storage, commit)
        except OSError:
            pass  # only a cache hint

    def load_config(self, path: Path | _Missing | None) -> dict[str, Any] | None:
        if not isinstance(path, Path):
            return None
        from paramscope.sources.config import load_json

        try:  # the same size, nesting and encoding rules as a local config.json
            config = load_json(path)
        except ParamscopeError as exc:
            raise ParamscopeError(self.source, f"{CONFIG_FILE}: {exc.reason}") from None
        if not isinstance(config, dict):
            raise ParamscopeError(self.source, "config.json is not a JSON object")
        return config

    def job(self, filename: str, revision: str | None, estimate: int) -> remote.ShardJob:
        """A shard from the cache when it is there (no request), else a ranged read of its resolve URL."""
        from huggingface_hub import hf_hub_url, try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo_id, filename, cache_dir=self.env.cache_dir, revision=revision)
        if isinstance(cached, str):
            return remote.ShardJob(filename, local=cached)
        if self.env.offline:
            raise NotCached(
                self.source, f"offline (HF_HUB_OFFLINE) and {filename} is not in the local Hugging Face cache"
            )
        url = hf_hub_url(self.repo_id, filename, revision=revision, endpoint=self.env.endpoint)
        return remote.ShardJob(filename, url=url, estimate=estimate)

    def named_file(self, filename: str, pool: Any, progress: Progress | None) -> tuple[Inventory, int]:
        """One file the user named: a GGUF (every part of a split one), a torch.save file, a PyTorch or
        safetensors index, a safetensors file."""
        from paramscope.sources import gguf

        metadata: dict[str, Any] = {"repository": self.repo_id, "revision": self.revision or "main",
                                    "file": filename}
        if filename.endswith((remote.TORCH_INDEX_SUFFIX, ".safetensors.index.json")):
            return self.index_file(filename, pool, progress, metadata)
        kind = remote.ranged_kind(filename)
        if kind == "gguf":
            parts = gguf.split_names(filename) or [filename]
            jobs = [self.job(part, self.revision, 0) for part in parts]
            inventory = remote.read_ranged_parts(self.fetcher, self.source, jobs, progress, pool)
        elif kind == "pytorch":
            jobs = [self.job(filename, self.revision, 0)]
            records, _, extra, _ = remote.read_shards(self.fetcher, self.source, jobs, progress)
            inventory = Inventory(source=self.source, format="pytorch", tensors=records, metadata=extra)
        elif filename.endswith(".safetensors"):
            jobs = [self.job(filename, self.revision, remote.UNKNOWN_FIRST_READ)]
            records, _, extra, _ = remote.read_shards(self.fetcher, self.source, jobs, progress)
            inventory = Inventory(source=self.source, format=FORMAT, tensors=records, metadata=extra)
        else:
            raise ParamscopeError(self.source, f"{filename}: paramscope reads .safetensors, .gguf, .bin, .pt, .pth "
                                               "and .ckpt files (and their .index.json) from the Hub")
        inventory = inventory.replace(metadata={**inventory.metadata, **metadata})
        return inventory, sum(job.local is None for job in jobs)

    def index_file(
        self, filename: str, pool: Any, progress: Progress | None, metadata: dict[str, Any]
    ) -> tuple[Inventory, int]:
        """A safetensors or PyTorch index and the headers of the shards it names."""
        path = self.download(filename)  # into the cache (and from it, offline), as the safetensors index
        if not isinstance(path, Path):
            if path is OFFLINE_MISSING:
                raise NotCached(self.source, f"offline (HF_HUB_OFFLINE) and {filename} is not in the local "
                                             "Hugging Face cache")
            raise remote.HTTPStatusError(self.source, f"{filename}: not found (404)", 404)
        raw = _read_local(self.source, path, remote.MAX_INDEX_SIZE, "index")
        weight_map, estimates, data_size = remote.plan_index(self.source, raw)
        directory = filename.rpartition("/")[0]
        jobs = [self.job(f"{directory}/{shard}" if directory else shard, self.revision, first)
                for shard, first in estimates.items()]
        pytorch = filename.endswith(remote.TORCH_INDEX_SUFFIX)
        if any((remote.ranged_kind(job.name) == "pytorch") != pytorch for job in jobs):
            raise ParamscopeError(self.source, f"{filename}: names shards of another format than its own")
        if directory:
            prefix = directory + "/"
            weight_map = {tensor: prefix + shard for tensor, shard in weight_map.items()}
        records, found, notes = remote.read_index_shards(
            self.fetcher, self.source, weight_map, jobs, data_size, progress, pool
        )
        inventory = Inventory(source=self.source, format="pytorch" if pytorch else FORMAT, tensors=records,
                              metadata={**metadata, **found}, notes=notes)
        return inventory, sum(job.local is None for job in jobs)

    def pickle_names(self, filename: str | None) -> list[str]:
        """The pickles reading the repository (or its file ``filename``) reads: see :func:`pickle_files`."""
        if filename is None:
            names = self.listing()
            if names is not None and (INDEX_FILE in names or SINGLE_FILE in names):
                return []  # safetensors is what is read
            if names is not None and TORCH_INDEX_FILE not in names:
                return [TORCH_SINGLE_FILE] if TORCH_SINGLE_FILE in names else []
            filename = TORCH_INDEX_FILE
        if not filename.endswith(remote.TORCH_INDEX_SUFFIX):
            return [filename] if remote.ranged_kind(filename) == "pytorch" else []
        path = self.download(filename)
        if not isinstance(path, Path):  # no index (no listing to say so first): the single file, if any
            return [TORCH_SINGLE_FILE] if filename == TORCH_INDEX_FILE else []
        _, estimates, _ = remote.plan_index(self.source, _read_local(self.source, path, remote.MAX_INDEX_SIZE,
                                                                     "index"))
        directory = filename.rpartition("/")[0]
        return [f"{directory}/{shard}" if directory else shard for shard in estimates]

    def listing(self) -> list[str] | None:
        """The repository's file names, from the Hub's API (one request), or None where it has none to give
        (an endpoint that is not the Hub, offline)."""
        if self.env.offline:
            return None
        from urllib.parse import quote

        revision = quote(self.revision or "main", safe="")
        url = f"{self.env.endpoint}/api/models/{self.repo_id}/revision/{revision}"
        try:
            raw = remote.fetch_file(self.fetcher, self.source, "the file listing", url, MAX_LISTING_BYTES).body
        except remote.HTTPStatusError as exc:
            if exc.status in (401, 403):
                raise ParamscopeError(self.source, "authentication required (set HF_TOKEN)") from None
            return None
        from paramscope import jsonlimits

        try:
            info = jsonlimits.loads(raw, MAX_LISTING_BYTES, 8)
        except jsonlimits.JSONLimitError as exc:
            raise ParamscopeError(self.source, f"the file listing: {remote._said(exc)}") from None
        siblings = info.get("siblings") if isinstance(info, dict) else None
        if not isinstance(siblings, list) or len(siblings) > MAX_LISTED_FILES:
            raise ParamscopeError(self.source, "the file listing is not a list of at most "
                                               f"{MAX_LISTED_FILES:,} files")
        names = []
        for entry in siblings:
            name = entry.get("rfilename") if isinstance(entry, dict) else None
            if isinstance(name, str):  # a name becomes a URL: the index's rule for shard names applies
                names.append(remote.check_shard_name(f"{self.source}: the file listing", name))
        return names

    def other_weights(
        self, pool: Any, progress: Progress | None, metadata: dict[str, Any]
    ) -> tuple[Inventory, int] | None:
        """No safetensors: a PyTorch index or ``pytorch_model.bin``, else the repository's GGUF files (one
        model read; several listed); None where there are none of these."""
        names = self.listing()
        if names is None:  # no listing: ask for the usual PyTorch names directly
            candidates = [TORCH_INDEX_FILE, TORCH_SINGLE_FILE]
        else:
            present = set(names)
            candidates = [name for name in (TORCH_INDEX_FILE, TORCH_SINGLE_FILE) if name in present]
        for candidate in candidates:
            try:
                if candidate == TORCH_INDEX_FILE:
                    inventory, read = self.index_file(candidate, pool, progress, dict(metadata))
                else:
                    inventory, read = self.named_file(candidate, pool, progress)
            except remote.HTTPStatusError as exc:
                if exc.status != 404:
                    raise
                continue
            except NotCached:  # offline: what is not cached is not there
                continue
            return inventory.replace(metadata={**inventory.metadata, **metadata}), read
        ggufs = _gguf_models(names or [])
        if not ggufs:
            return None
        if len(ggufs) == 1:
            inventory, read = self.named_file(ggufs[0][0], pool, progress)
            return inventory.replace(metadata={**inventory.metadata, **metadata}), read
        return self.gguf_listing(ggufs, pool, metadata, set(names or []))

    def gguf_listing(
        self, ggufs: list[list[str]], pool: Any, metadata: dict[str, Any], present: set[str]
    ) -> tuple[Inventory, int]:
        """Several GGUF models in one repository (its quantizations): each one's header read, listed with its
        size, quantization and bits per weight, for the user to name one (``hf:org/name:FILE``). Each model's
        inventory is handed on (``pending["gguf.models"]``, in row order): the rules stage settles it and
        writes the row's logical ``parameters`` (ties applied), which a reader cannot."""
        from concurrent.futures import as_completed

        left_out = len(ggufs) - MAX_LISTED_GGUF
        ggufs = ggufs[:MAX_LISTED_GGUF]
        found: list[tuple[dict[str, Any], Inventory | None]] = [({}, None)] * len(ggufs)
        failed: dict[int, ParamscopeError] = {}
        for k, parts in enumerate(ggufs):  # a split with a part missing is not fetched: its row says so
            missing = [part for part in parts if part not in present]
            if missing:
                failed[k] = ParamscopeError(self.source, f"{missing[0]}: part of a split GGUF missing from the "
                                                         f"repository ({len(missing)} of {len(parts)} parts missing)")
                found[k] = (dict.fromkeys(LISTED_FIELDS) | {"file": parts[0], "parts": len(parts),
                                                             "error": failed[k].reason}, None)
        futures = {pool.submit(self._summary, parts): k for k, parts in enumerate(ggufs) if k not in failed}
        headers = sum(len(ggufs[k]) for k in futures.values())
        try:
            for future in as_completed(futures):
                k = futures[future]
                try:
                    found[k] = future.result()
                except ParamscopeError as exc:  # one file that cannot be read is a row that says so
                    failed[k] = exc
                    found[k] = (dict.fromkeys(LISTED_FIELDS) | {"file": ggufs[k][0], "parts": len(ggufs[k]),
                                                                 "error": exc.reason}, None)
        finally:
            for future in futures:
                future.cancel()
        if len(failed) == len(ggufs):
            raise failed[0]  # nothing to list: the first file's failure, as its own read would say it
        rows = [row for row, _ in found]
        models = [inventory for _, inventory in found]
        notes = []
        if left_out > 0:
            notes.append(f"{left_out} more GGUF models are not listed (at most {MAX_LISTED_GGUF} are)")
        inventory = Inventory(source=self.source, format=GGUF_LISTING, tensors=[],
                              metadata={**metadata, "gguf.files": rows}, notes=notes,
                              pending={"gguf.models": models})
        return inventory, headers

    def _summary(self, parts: list[str]) -> tuple[dict[str, Any], Inventory]:
        """One listed model's row (what its header says: quantization, size, elements, bits per weight) and
        its inventory."""
        jobs = [self.job(part, self.revision, 0) for part in parts]
        sizes: list[int] = [0] * len(jobs)
        inventory = remote.read_ranged_parts(self.fetcher, self.source, jobs, sizes=sizes)
        file_type = inventory.metadata.get("gguf.file_type")
        quantization = str(file_type).removeprefix("MOSTLY_") if file_type else _dominant_dtype(inventory)
        elements, data_bytes = _elements_and_bytes(inventory)
        row = {
            "file": parts[0],
            "parts": len(parts),
            "quantization": quantization,
            "bytes": sum(sizes),
            "elements": elements,
            "tensor_bytes": data_bytes,
            # llama.cpp's "BPW" (llama_model_loader: n_bytes * 8 / n_elements over every tensor of the file)
            "bits_per_weight": round(8 * data_bytes / elements, 2) if elements else None,
            "tensors": len(inventory.tensors),
            "data_offset": inventory.metadata.get("gguf.data_offset"),
            "error": None,
        }
        return row, inventory

    def single_file(
        self,
        revision: str | None,
        pool: Any,
        progress: Progress | None,
        metadata: dict[str, Any],
        notes: list[str],
        config: dict[str, Any] | None,
    ) -> Inventory:
        """No index: ``model.safetensors``; without it, the architecture from config.json on meta."""
        try:
            job = self.job(SINGLE_FILE, revision, remote.UNKNOWN_FIRST_READ)
        except ParamscopeError:
            job = None  # offline and not cached
        if job is not None:
            try:
                records, _, extra, _ = remote.read_shards(self.fetcher, self.source, [job], progress)
            except remote.HTTPStatusError as exc:
                if exc.status != 404:
                    raise
            else:
                metadata.update(extra)
                self.headers_read = 1
                return Inventory(source=self.source, format=FORMAT, tensors=records, metadata=metadata, notes=notes)
        other = self.other_weights(pool, progress, metadata)
        if other is not None:
            inventory, self.headers_read = other
            return inventory.replace(notes=[*inventory.notes, *notes])
        if config is None:
            if self.env.offline:
                raise ParamscopeError(
                    self.source, "offline (HF_HUB_OFFLINE) and neither safetensors headers nor config.json are cached"
                )
            raise ParamscopeError(self.source, "the repository has no safetensors, PyTorch or GGUF weights and no "
                                               "config.json")
        return self._from_config(config, metadata, notes)

    def _from_config(self, config: dict[str, Any], metadata: dict[str, Any], notes: list[str]) -> Inventory:
        from paramscope.sources.config import from_config

        inventory = from_config(config, source=self.source)
        return inventory.replace(
            metadata={**inventory.metadata, **metadata},
            notes=[*inventory.notes,
                   "The repository has no safetensors, PyTorch (.bin) or GGUF weights: the architecture was built "
                   "from config.json.", *notes],
        )


def _gguf_models(names: list[str]) -> list[list[str]]:
    """The GGUF models among a repository's files: a single file, or every part of a split one (listed
    once, by its first part, also when a part is missing: its row says which), in the listing's order."""
    from paramscope.sources import gguf

    models: list[list[str]] = []
    seen: set[str] = set()
    for name in names:
        if not name.lower().endswith(".gguf") or name in seen:
            continue
        parts = gguf.split_names(name) or [name]
        models.append(parts)
        seen.update(parts)
    return models


def _elements_and_bytes(inventory: Inventory) -> tuple[int, int]:
    """Elements and data bytes of every tensor as the file stores them (GGML block sizes: paramscope.dtypes)."""
    import math

    from paramscope import dtypes

    elements = data_bytes = 0
    for record in inventory.tensors:
        numel = math.prod(record.shape)
        elements += numel
        data_bytes += dtypes.get(record.dtype).nbytes(numel)
    return elements, data_bytes


def _dominant_dtype(inventory: Inventory) -> str:
    """The dtype holding most elements: what a GGUF without ``general.file_type`` is quantized as."""
    import math

    totals: dict[str, int] = {}
    for record in inventory.tensors:
        totals[record.dtype] = totals.get(record.dtype, 0) + math.prod(record.shape)
    return max(totals, key=totals.__getitem__) if totals else "?"
