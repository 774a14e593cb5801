"""The one error type paramscope raises for bad input."""

from __future__ import annotations


def without_credentials(text: str) -> str:
    """``text`` with the user name and password of every URL in it replaced by ``***`` (``s3://key:secret@b/``,
    ``https://user:pass@host/``), and the values of query parameters named like credentials too (``?token=``,
    a presigned URL's ``X-Amz-Signature=``): an error line names its source, and must never show a secret."""
    if "://" not in text or ("@" not in text and "=" not in text):  # the common message: no regex compiled
        return text
    import re

    text = re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@", r"\1***@", text)
    return re.sub(r"(?i)([?&][^=&#\s]*(?:token|sig|secret|pass|pwd|key|credential|auth)[^=&#\s]*=)[^&#\s'\"]*",
                  r"\1***", text)


class ParamscopeError(Exception):
    """Bad input: a file that is not what it claims, a spec that does not resolve, a missing extra.

    Its message is one line, ``"<source>: <reason>"``; the CLI prints it as is and exits 1.
    """

    def __init__(self, source: object, reason: str) -> None:
        self.source = without_credentials(str(source))
        self.reason = without_credentials(reason)
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
