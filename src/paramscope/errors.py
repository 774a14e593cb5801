"""The one error type paramscope raises for bad input."""

from __future__ import annotations


class ParamscopeError(Exception):
    """Bad input: a file that is not what it claims, a spec that does not resolve, a missing extra.

    Its message is one line, ``"<source>: <reason>"``; the CLI prints it as is and exits 1.
    """

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


class MissingExtraError(ParamscopeError):
    """An optional dependency is needed for this source or output and is not installed."""

    def __init__(self, source: object, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            source,
            f"{purpose} needs the '{module}' package: pip install 'paramscope[{extra}]'",
        )
        self.module = module
        self.extra = extra


def require(module: str, *, extra: str, source: object, purpose: str):
    """Import ``module`` or raise a :class:`MissingExtraError` that says which extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name != module and not module.startswith(exc.name + "."):
            raise  # the module exists but one of its own imports failed: a real bug, show it
        raise MissingExtraError(source, module, extra, purpose) from None
