"""Source: a model described in Python — ``path/to/file.py:Name`` or ``package.module:Name``.

``Name`` is an ``nn.Module`` subclass, a factory returning a module, or a module instance. It is
built inside ``torch.device("meta")`` unless another device is asked for, so even a 70B
architecture is counted without allocating its weights. This runs the named Python code: it is the
user's own model definition, named explicitly on the command line, never something read from a file.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from paramscope.errors import ParamscopeError

_SPEC = re.compile(r"^(?P<target>[^:]+(?:\.py)?):(?P<name>[A-Za-z_][\w.]*)$")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def looks_like_spec(text: str) -> bool:
    """True for ``file.py:Name`` and ``package.module:Name``."""
    match = _SPEC.match(text)
    if match is None:
        return False
    target = match["target"]
    return target.endswith(".py") or bool(_DOTTED.match(target))


def _load_python_file(path: Path, spec_text: str) -> Any:
    if not path.is_file():
        raise ParamscopeError(spec_text, f"no such Python file: {path}")
    module_name = f"_paramscope_user_{abs(hash(str(path.resolve())))}"
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None or import_spec.loader is None:
        raise ParamscopeError(spec_text, f"cannot import {path}")
    module = importlib.util.module_from_spec(import_spec)
    sys.modules[module_name] = module
    # Let the file import its siblings, as running it as a script would.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        import_spec.loader.exec_module(module)
    except Exception as exc:
        raise ParamscopeError(spec_text, f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _resolve(spec_text: str) -> Any:
    match = _SPEC.match(spec_text)
    if match is None:
        raise ParamscopeError(spec_text, "expected 'path/to/file.py:Name' or 'package.module:Name'")
    target, name = match["target"], match["name"]
    if target.endswith(".py"):
        holder = _load_python_file(Path(target), spec_text)
    else:
        try:
            holder = importlib.import_module(target)
        except ImportError as exc:
            raise ParamscopeError(spec_text, f"cannot import module {target!r}: {exc}") from exc
        except Exception as exc:
            raise ParamscopeError(spec_text, f"importing {target} failed: {type(exc).__name__}: {exc}") from exc
    obj = holder
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ParamscopeError(spec_text, f"{target} has no attribute {name!r}") from None
    return obj


def build(
    spec_text: str,
    *,
    device: str = "meta",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Any:
    """The ``nn.Module`` that ``spec_text`` names, built on ``device``."""
    from paramscope.errors import require

    torch = require("torch", extra="torch", source=spec_text, purpose="building a model from Python")
    target = _resolve(spec_text)
    if isinstance(target, torch.nn.Module):
        if args or kwargs:
            raise ParamscopeError(spec_text, "names a module instance: --args/--kwargs do not apply")
        return target
    if not callable(target):
        raise ParamscopeError(spec_text, f"is a {type(target).__name__}, not a Module class or factory")
    try:
        with torch.device(device):
            model = target(*(args or []), **(kwargs or {}))
    except Exception as exc:
        raise ParamscopeError(spec_text, f"building the model failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ParamscopeError(spec_text, f"returned a {type(model).__name__}, not a torch.nn.Module")
    return model
