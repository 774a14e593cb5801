"""Source: a Hugging Face Hub repository, ``hf:org/name[@revision]`` (or a bare ``org/name``), headers only.

What is fetched, in order, and nothing else:

1. ``config.json`` and ``model.safetensors.index.json``, in parallel, through ``hf_hub_download``: small
   files, which it caches, and serves from the cache when offline.
2. With an index, the header of every shard it names, by ranged reads (:mod:`paramscope.sources.remote`),
   the first read sized from the tensor names the index lists for that shard; without one, the header
   of ``model.safetensors``. A shard already in the local cache is read from disk with no request.
3. With neither, the architecture is built on the meta device from ``config.json``
   (``paramscope.sources.config``).

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

    return {CONFIG_FILE: MAX_CONFIG_BYTES, INDEX_FILE: remote.MAX_INDEX_SIZE}


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


class _Missing:
    """Marks a small file that offline mode could not find in the cache."""


OFFLINE_MISSING = _Missing()


def read(text: str, progress: Progress | None = None) -> Inventory:
    """The Inventory of a Hub repository, from config.json and the safetensors headers only."""
    repo_id, revision = parse(text)
    source = PREFIX + repo_id + (f"@{revision}" if revision else "")
    if os.environ.get("HF_ENDPOINT"):  # checked before huggingface_hub is imported: it parses it on import
        try:
            remote.check_url(os.environ["HF_ENDPOINT"])
        except ValueError as exc:
            raise ParamscopeError(source, f"HF_ENDPOINT {os.environ['HF_ENDPOINT']!r}: {exc}") from None
    require("huggingface_hub", extra="hub", source=source, purpose="reading from the Hugging Face Hub")
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    env = _Env(constants)
    fetcher = remote.Fetcher(remote.HttpxTransport(get_session()), _headers(source, constants.HF_TOKEN_PATH))
    hub = _Hub(source, repo_id, revision, env, fetcher)
    # One pool for the whole call: config.json downloads on it while the index is fetched here and its
    # shards are read; the config is needed only at the end.
    with ThreadPoolExecutor(max_workers=remote.WORKERS, thread_name_prefix="paramscope-hub") as pool:
        config_future = pool.submit(hub.download, CONFIG_FILE)
        try:
            inventory, headers_read = _read_weights(hub, pool, progress, config_future)
            config = hub.load_config(config_future.result())
        finally:
            config_future.cancel()
    metadata = {**inventory.metadata, "fetched_bytes": fetcher.fetched_bytes, "requests": fetcher.requests}
    notes = list(inventory.notes)
    if env.offline:
        notes.append("Offline (HF_HUB_OFFLINE): everything was read from the local Hugging Face cache.")
    elif headers_read:
        notes.append(remote.fetched_note(fetcher, headers_read))
    pending = inventory.pending
    if inventory.format == FORMAT and config is not None:  # headers read: the rules stage applies the config
        pending = {**pending, "config": config}
    return inventory.replace(metadata=metadata, notes=notes, pending=pending)


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
    config = hub.load_config(config_future.result())  # for the fallback, and its commit
    pinned = pinned or _commit_of(config_future.result())
    if "commit" not in metadata and _commit_of(config_future.result()):
        metadata["commit"] = _commit_of(config_future.result())
    inventory = hub.single_file(pinned, progress, metadata, notes, config, index_path is OFFLINE_MISSING)
    return inventory, 1 if inventory.format == FORMAT else 0


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
            got = remote.fetch_file(self.fetcher, self.source, filename, url, _small_limits()[filename])
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
            raise ParamscopeError(
                self.source, f"offline (HF_HUB_OFFLINE) and {filename} is not in the local Hugging Face cache"
            )
        url = hf_hub_url(self.repo_id, filename, revision=revision, endpoint=self.env.endpoint)
        return remote.ShardJob(filename, url=url, estimate=estimate)

    def single_file(
        self,
        revision: str | None,
        progress: Progress | None,
        metadata: dict[str, Any],
        notes: list[str],
        config: dict[str, Any] | None,
        index_unknown: bool,
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
                return Inventory(source=self.source, format=FORMAT, tensors=records, metadata=metadata, notes=notes)
        if config is None:
            if self.env.offline:
                raise ParamscopeError(
                    self.source, "offline (HF_HUB_OFFLINE) and neither safetensors headers nor config.json are cached"
                )
            raise ParamscopeError(self.source, "the repository has no safetensors weights and no config.json")
        return self._from_config(config, metadata, notes)

    def _from_config(self, config: dict[str, Any], metadata: dict[str, Any], notes: list[str]) -> Inventory:
        from paramscope.sources.config import from_config

        inventory = from_config(config, source=self.source)
        return inventory.replace(
            metadata={**inventory.metadata, **metadata},
            notes=[*inventory.notes,
                   "The repository has no safetensors weights: the architecture was built from config.json.", *notes],
        )
