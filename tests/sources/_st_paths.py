"""The safetensors reader's two header paths, each on its own, for the tests that compare them
(tests/sources/test_safetensors_fast.py, tests/hostile/test_redteam_fastpath.py): the checked path
(``_parse_json`` + ``_check_into``), the fast path alone (``_fast_check_into``) and the reader as a whole
(``_header_into``), each giving ``("ok", columns, metadata)`` or ``("error", message)``."""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.sources import safetensors as reader

FIELDS = ("names", "shapes", "kinds", "roles", "numels", "sizes", "origins")


def columns_of(columns: reader._Columns) -> dict[str, list]:
    return {field: list(getattr(columns, field)) for field in FIELDS}


def checked(header: bytes, file_size: int | None) -> tuple:
    """The checked path alone: ("ok", columns, metadata) or ("error", message)."""
    columns = reader._Columns()
    try:
        parsed = reader._parse_json("f", header, pairs=True)
        metadata = reader._check_into(columns, "f", parsed, len(header), file_size, "o")
    except ParamscopeError as exc:
        return ("error", exc.reason)
    return ("ok", columns_of(columns), metadata)


def fast(header: bytes, file_size: int | None) -> tuple | None:
    """The fast path alone: ("ok", columns, metadata), or None when it falls back (columns then untouched)."""
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        return None
    columns = reader._Columns()
    metadata = reader._fast_check_into(columns, "f", text, len(header), file_size, "o")
    if metadata is None:
        assert columns_of(columns) == {field: [] for field in FIELDS}, "a fallback left columns behind"
        return None
    return ("ok", columns_of(columns), metadata)


def whole(header: bytes, file_size: int | None) -> tuple:
    """The reader as a whole: the fast path, else the checked one."""
    columns = reader._Columns()
    try:
        metadata = reader._header_into(columns, "f", header, file_size, "o")
    except ParamscopeError as exc:
        return ("error", exc.reason)
    return ("ok", columns_of(columns), metadata)


def entry(name: str, dtype: str, shape: str, begin: int | str, end: int | str) -> str:
    """One tensor's member of a header, in the crate's compact form (the values written as given, for attacks)."""
    return f'"{name}":{{"dtype":"{dtype}","shape":[{shape}],"data_offsets":[{begin},{end}]}}'


def header_of(*members: str, pad: str = "") -> bytes:
    """A header's bytes from its members, then ``pad`` (the crate pads with spaces)."""
    return ("{" + ",".join(members) + "}" + pad).encode()
