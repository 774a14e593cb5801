"""The names packed quantization schemes give their tensors: one table, read by the live reader (which of a
module's own parameters are bookkeeping) and by the rules (:mod:`paramscope.quantization`, which marks a
checkpoint's tensors by it), so a live module and its checkpoint agree on what is a parameter. No project
imports: it is vocabulary, not a rule.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Name suffix -> what it marks at the module it ends. "packed": the tensor holding the weights;
# anything else: bookkeeping (Role.QUANT_AUX) of the family named. Longest suffixes are tried first.
SUFFIXES: dict[str, tuple[str, str]] = {
    ".qweight": ("packed", "gptq/awq"),
    ".qzeros": ("aux", "gptq/awq"),
    ".g_idx": ("aux", "gptq/awq"),
    ".scales": ("aux", "gptq/awq/mlx"),
    ".biases": ("aux", "mlx"),
    ".weight.absmax": ("aux", "bnb4"),
    ".weight.quant_map": ("aux", "bnb4"),
    ".weight.nested_absmax": ("aux", "bnb4"),
    ".weight.nested_quant_map": ("aux", "bnb4"),
    ".weight.quant_state.bitsandbytes__nf4": ("aux", "bnb4"),
    ".weight.quant_state.bitsandbytes__fp4": ("aux", "bnb4"),
    ".SCB": ("aux", "bnb8"),
    ".weight_format": ("aux", "bnb8"),
    ".weight_packed": ("packed", "compressed-tensors"),
    ".weight_shape": ("aux", "compressed-tensors"),
    ".weight_zero_point": ("aux", "compressed-tensors"),
    ".weight_g_idx": ("aux", "compressed-tensors"),
    ".weight_scale": ("aux", "scaled"),
    ".weight_scale_inv": ("aux", "scaled"),
    ".input_scale": ("aux", "scaled"),
    ".input_zero_point": ("aux", "scaled"),
    ".weight_global_scale": ("aux", "compressed-tensors"),
    ".input_global_scale": ("aux", "compressed-tensors"),
    ".weight_scale_2": ("aux", "scaled"),
    ".k_scale": ("aux", "kv"),
    ".v_scale": ("aux", "kv"),
    ".q_scale": ("aux", "kv"),
    ".output_scale": ("aux", "kv"),
    "_blocks": ("packed", "mxfp4"),
    "_scales": ("aux", "mxfp4"),
}

SUFFIX_TUPLE = tuple(SUFFIXES)
"""For the one cheap test every name gets: ``name.endswith(SUFFIX_TUPLE)`` runs in C."""


BY_LAST: dict[str, tuple[str, ...]] = {}
"""The suffixes by their last character: a name can only end with those its own last character keys (a test of a
handful of suffixes, not all of them)."""
for _suffix in SUFFIX_TUPLE:
    BY_LAST[_suffix[-1]] = (*BY_LAST.get(_suffix[-1], ()), _suffix)
del _suffix


def ending_with_a_suffix(names: list[str], modules: list[str] | None = None) -> list[int]:
    """The places of the names that end with a suffix of the table, in order: each name tested (in C) against the
    suffixes that end with its last character only.

    Given each name's module (the name less its last dotted part, as ``rpartition``), decided instead by what each
    name has past its module, its last part with the dot before it (the name itself where it has no dot), each
    distinct one looked at once (a model's names end in a few dozen ways): a suffix of one dot, at its start, ends
    the name iff it is that part; one with no dot iff it ends that part; one of several dots only if the part is
    its last, and then those names alone are tested against the suffixes (:data:`_BY_LAST_PART`)."""
    from itertools import compress, repeat
    from operator import itemgetter

    if modules is not None:
        verdict = _Verdicts()  # True: a suffix ends the name; None: the name is to be tested; each end once
        found = list(map(verdict.__getitem__, map(str.removeprefix, names, modules)))
        values = verdict.values()
        if True not in values and None not in values:
            return []
        places = list(compress(range(len(names)), found))
        if None in values:
            from operator import is_

            unsure = list(compress(range(len(names)), map(is_, found, repeat(None))))
            tested = compress(unsure, map(str.endswith, map(names.__getitem__, unsure), repeat(SUFFIX_TUPLE)))
            places = sorted([*places, *tested])
        return places
    lasts = map(itemgetter(slice(-1, None)), names)  # "" for an empty name: no suffix
    return list(compress(range(len(names)), map(str.endswith, names, map(BY_LAST.get, lasts, repeat(())))))


_ONE_DOT = frozenset(suffix for suffix in SUFFIX_TUPLE if suffix.startswith(".") and suffix.count(".") == 1)
_NO_DOT = tuple(suffix for suffix in SUFFIX_TUPLE if "." not in suffix)
_BY_LAST_PART = frozenset(suffix[suffix.rindex("."):] for suffix in SUFFIX_TUPLE if suffix.count(".") > 1)
"""The last dotted part (with its dot) of each suffix of several dots: a name ending so may end with that suffix."""
assert all(suffix.count(".") == 0 or suffix in _ONE_DOT or suffix.count(".") > 1 for suffix in SUFFIX_TUPLE)


class _Verdicts(dict):  # type: ignore[type-arg]
    """What a name's last dotted part (with its dot) says of the suffixes (:func:`ending_with_a_suffix`), worked out
    the first time it is looked up (``__getitem__`` is the dict's own, in C: no pass to find the distinct parts)."""

    __slots__ = ()

    def __missing__(self, end: str) -> bool | None:
        said = self[end] = True if end in _ONE_DOT or end.endswith(_NO_DOT) else (
            None if end in _BY_LAST_PART else False)
        return said


_TAIL = 8
"""Characters at the end of a name that :func:`candidates` looks at: what tells the suffixes apart there."""
_SHORT_SUFFIXES = tuple(suffix for suffix in SUFFIX_TUPLE if len(suffix) <= _TAIL)
_LONG_TAILS = frozenset(suffix[-_TAIL:] for suffix in SUFFIX_TUPLE if len(suffix) > _TAIL)


def candidates(names: Iterable[str]) -> bool:
    """False where no name ends with a suffix of the table: then nothing is quantized (so an unquantized
    inventory's records are never made, nor :mod:`paramscope.quantization` imported). True may be a false
    alarm (:func:`paramscope.quantization.changes` looks at each name).

    Only the distinct last :data:`_TAIL` characters of the names are looked at, gathered in C (a model has a
    handful): a name that ends with a suffix ends with it there, or with its last :data:`_TAIL` characters."""
    from itertools import islice
    from operator import itemgetter, methodcaller

    names = list(names)
    if any(map(methodcaller("endswith", SUFFIX_TUPLE), islice(names, 64))):  # a quantized model shows it at once
        return True
    tails = set(map(itemgetter(slice(-_TAIL, None)), names))
    return any(tail.endswith(_SHORT_SUFFIXES) or tail in _LONG_TAILS for tail in tails)


def aux_parameter_names() -> frozenset[str]:
    """Attribute names that mark a scheme's bookkeeping on the module that holds it: the one-segment ``aux``
    suffixes (``weight_scale_inv``, ``input_scale``, ``SCB``)."""
    return frozenset(
        suffix[1:] for suffix, (kind, _family) in SUFFIXES.items() if kind == "aux" and suffix.count(".") == 1
    )
