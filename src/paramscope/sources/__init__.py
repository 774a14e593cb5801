"""Sources turn what the user names into an :class:`~paramscope.records.Inventory`.

One module per kind of source: ``live`` (an ``nn.Module``), ``spec`` (Python that builds one), and one
module per checkpoint format. :func:`open_source` decides which one applies; readers never print, and
never apply a rule: what a rule needs they hand on in ``Inventory.pending`` (the rules stage is
:func:`paramscope.pipeline.settle`; :func:`paramscope.pipeline.read` is read + settle).
"""

from __future__ import annotations

import errno
import os
import sys

from paramscope.errors import ParamscopeError
from paramscope.records import Inventory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

EXAMPLE = "example"
"""The name of the built-in example (the article's model)."""
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "file", "oss", "r2"})
"""URL schemes read through fsspec (:mod:`paramscope.sources.objectstore`); http(s) has its own reader."""
CHECKPOINT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npz",
                       ".npy", ".onnx", ".h5", ".keras")
"""Files a scan of a tree or a prefix takes for checkpoints (and the safety verdict of a directory looks at, with
its config.json); other files (tokenizers, READMEs) hold no weights."""
READ_IS_SAFE = ("safetensors", "gguf")
"""Formats (an inventory's ``format``) whose reader claims a file only by a header no pickle or zip has (an
8-byte length and JSON; ``GGUF``), or by its name where the head is neither: a local file read as one holds
no code, safe by construction (:data:`paramscope.safety.SAFE_FORMATS`, a verdict ``paramscope FILE`` does not
show), without a second look. (NumPy, Keras and ONNX files may be zips, whose members the safety check opens.)"""
SHARD_NAME = r"-\d{3,}-of-\d{3,}\."
"""What a shard's name holds: ``model-00001-of-00003.safetensors``."""


def one_model(names: list[str]) -> bool:
    """Whether a directory (or object-store prefix) whose files are ``names`` is one model as a whole: it holds
    a safetensors index, or safetensors files beside a config.json or all named as shards. The rule of
    ``paramscope scan``, for a local tree (:func:`paramscope.scan.walk`) and a prefix
    (:func:`paramscope.sources.objectstore.list_models`) alike."""
    import re

    tensors = [n for n in names if n.endswith(".safetensors")]
    return any(n.endswith(".safetensors.index.json") for n in names) or (bool(tensors) and (
        "config.json" in names or all(re.search(SHARD_NAME, n) for n in tensors)))


MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)
MISSING_WINERRORS = (21, 123, 1921)
"""The errors pathlib's ``exists()``, ``is_dir()`` and ``is_file()`` take for "no such path" (CPython 3.11
``pathlib._IGNORED_ERRNOS`` and ``_IGNORED_WINERRORS``); they raise any other, and so does :func:`path_mode`."""


def path_mode(path: str | os.PathLike[str]) -> int | None:
    """``os.stat(path).st_mode`` (symbolic links followed), or None where pathlib would say the path is not there:
    ``Path.exists()``, ``is_dir()`` and ``is_file()`` for a path kept as text (:func:`path_text`)."""
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in MISSING_ERRNOS or getattr(exc, "winerror", None) in MISSING_WINERRORS:
            return None
        raise
    except ValueError:  # a NUL in it, or not encodable
        return None


def path_text(text: str) -> str:
    """``str(Path(text))``: a local path as pathlib writes it (``./a//b/`` -> ``a/b``), the form readers name a file
    in. A POSIX path with no empty or ``.`` component (as typed, or completed by a shell) is that already, and is
    returned without importing pathlib: with the urllib.parse and ipaddress it brings, that import is a tenth of
    reading a small file (issue 12). Readers that want a ``Path`` make one (:data:`files.TEXT_PATH_READERS`)."""
    if (os.name == "posix" and text not in ("", ".") and "//" not in text and "/./" not in text
            and not text.startswith("./") and not text.endswith(("/", "/."))):
        return text
    from pathlib import Path

    return str(Path(text))


def _is_path(source: object) -> bool:
    """``isinstance(source, pathlib.Path)``, without importing pathlib: a Path exists only once it is imported."""
    pathlib = sys.modules.get("pathlib")
    return pathlib is not None and isinstance(source, pathlib.Path)


def open_source(
    source: Any,
    *,
    example_input: Any = None,
    device: str = "meta",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    progress: Callable[..., Any] | None = None,
) -> Inventory:
    """Read ``source`` — an ``nn.Module``, a path, a spec string, ``"example"``, a Hugging Face repository
    (``hf:org/name[@rev]``, or a bare ``org/name`` that is no local path) or an ``http(s)://`` URL of a
    safetensors file or index, or an object-store URL (``s3://``, ``gs://``, ``az://``: fsspec) — into an Inventory.

    ``progress``, when given, is called as ``progress(done, total, fetched_bytes)`` after each remote
    file (shard header) is read; it lets the CLI draw a bar without sources printing anything.
    """
    text: str | None = None  # a local path, or a name that may be one
    if isinstance(source, bytes):  # a file name that need not be UTF-8 (b"\xff.safetensors"): a path only
        text = path_text(os.fsdecode(source))
    elif isinstance(source, str) or _is_path(source):
        text = str(source)
    if isinstance(source, str) and source.startswith("hf:"):
        from paramscope.sources import hub

        return hub.read(source, progress=progress)
    if isinstance(source, str) and "://" in source and source.split("://", 1)[0].lower() in OBJECT_STORES:
        from paramscope.sources import objectstore

        return objectstore.read(source, progress=progress)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        from paramscope.sources import remote

        return remote.read_url(source, progress=progress)
    if text is not None:
        if text == EXAMPLE:
            from paramscope.sources import live
            from paramscope.sources.spec import build

            model = build("paramscope.examples:MyModel", device="cpu")
            return live.from_module(model, source="MyModel (built-in example)", example_input=example_input)
        path = path_text(text)
        if path_mode(path) is not None:  # Path(text).exists()
            from paramscope.sources.files import read_path

            return read_path(path)
        if isinstance(source, str) and ":" not in text:  # never a spec: perhaps a bare Hub repository id
            from paramscope.sources import hub

            if hub.looks_like_repo(text):
                try:
                    return hub.read(text, progress=progress)
                except ParamscopeError as exc:  # say both readings of the name, a local one first
                    raise ParamscopeError(
                        text, f"no such file or directory; as a Hugging Face repository: {exc.reason}"
                    ) from None
        from paramscope.sources import live  # live modules need torch: imported only when one is asked for
        from paramscope.sources.spec import build, looks_like_spec

        if looks_like_spec(text):
            model = build(text, device=device, args=args, kwargs=kwargs)
            return live.from_module(model, source=text, example_input=example_input)
        raise ParamscopeError(text, "no such file, and not a 'file.py:Name' or 'package.module:Name' spec")
    from paramscope.sources import live

    return live.from_module(source, example_input=example_input)
