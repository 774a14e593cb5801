"""Compare two models or checkpoints: ``paramscope diff A B``. Will this checkpoint load into this model?

:func:`compare` matches the tensors of two :class:`~paramscope.report.Report` by name and reports
what ``model_a.load_state_dict(checkpoint_b, strict=True)`` would: ``missing_keys`` (in A, not in B),
``unexpected_keys`` (in B, not in A) and ``shape_mismatches``; and besides, dtype changes, tie
groups that differ, the totals and per-module parameter deltas.

Rules
-----
* Only parameters and buffers are matched; optimizer state and quantization bookkeeping are not.
* A non-persistent buffer (rotary ``inv_freq``; never saved in a state_dict) missing on the other side
  is not a difference; when both sides have it, its shape is compared.
* Ties: a checkpoint that stores only one name of a tie group still loads (``lm_head.weight`` tied to
  ``transformer.wte.weight``): a name absent on the other side whose tie partner is present there is
  listed under ``tie_covered``, not as missing. The ties a file or its config declares are found when it is
  read (:mod:`paramscope.ties`), so two files that keep different names of one group compare equivalent.
  Tie groups are compared over the names both sides have; a group that differs is listed under
  ``tie_changes``.
* **Equivalent** means: the same names (after normalisation, ties as above) with the same shapes.
  A dtype difference alone (bf16 vs float32 vs Q4_K) is listed but keeps the two equivalent (exit 0);
  ``--strict`` makes dtype and tie differences count too (exit 1).
* Name normalisation (on unless ``--no-normalize``), in this order, per side:
  1. a GGUF side compared with a side that is not GGUF is renamed to that side's Hugging Face names through
     gguf-py's ``TensorNameMap`` for its ``general.architecture`` (every architecture gguf-py knows; names
     without a counterpart are listed in a note); without gguf-py, a llama-family GGUF (:data:`LLAMA_FAMILY`,
     or no ``general.architecture``) is renamed by :data:`GGUF_TOP`, :data:`GGUF_BLOCK`. A renamed tensor
     stored transposed (llama.cpp writes GPT-2's Conv1D weights Linear-shaped) compares as the same shape;
  2. wrapper components (:data:`WRAPPER_COMPONENTS`: ``_orig_mod`` of torch.compile,
     ``_fsdp_wrapped_module``, ``_checkpoint_wrapped_module``) are dropped wherever they occur;
  3. a leading ``module.`` (DDP, DeepSpeed) is stripped when every name of that side has it;
  4. a leading ``model.`` is stripped from one side when only that side has names starting with it
     (``LlamaForCausalLM`` vs ``LlamaModel``).
* Per-module deltas: parameters of every module path down to :data:`MODULE_DEPTH` levels, each tie
  group counted once, under a name the other side also has where there is one (the counting rule is
  the report's: :func:`paramscope.report.module_parameters`).

This module is the comparison model; :mod:`paramscope.renderers.diff_text` draws it (text, markdown,
JSON) and :mod:`paramscope.commands.diff` is the command.

Exit codes of ``paramscope diff`` (as diff(1)): 0 equivalent, 1 different, 2 trouble (bad input,
bad usage; one line on stderr).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from typing import Any

from paramscope.records import Role, TensorRecord
from paramscope.report import Report, module_parameters

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2

WRAPPER_COMPONENTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})
"""Name components that wrappers insert and that a plain model does not have."""
LEADING_WRAPPERS = ("module.",)
"""Prefixes of DistributedDataParallel / DeepSpeed, stripped when a whole side carries them."""

LLAMA_FAMILY = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""GGUF ``general.architecture`` values whose tensor names follow the Hugging Face Llama layout."""
GGUF_TOP = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
"""GGUF top-level tensor stems -> Hugging Face module paths (the ``.weight``/``.bias`` suffix is kept)."""
GGUF_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
"""GGUF ``blk.N.<stem>`` -> ``model.layers.N.<path>``."""

MODULE_DEPTH = 3
COMPARED_ROLES = (Role.PARAMETER, Role.BUFFER)


# ---- name normalisation -------------------------------------------------------------------------


def gguf_to_hf(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; other names unchanged."""
    parts = name.split(".")
    if len(parts) == 2 and parts[0] in GGUF_TOP:
        return f"{GGUF_TOP[parts[0]]}.{parts[1]}"
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in GGUF_BLOCK:
        return f"model.layers.{parts[1]}.{GGUF_BLOCK[parts[2]]}.{parts[3]}"
    return name


def _is_llama_gguf(report: Report) -> bool:
    arch = report.metadata.get("general.architecture")
    return report.format == "gguf" and (arch is None or arch in LLAMA_FAMILY)


MAX_GGUF_BLOCKS = 512
"""Blocks gguf-py's name map is built for at most: it holds every block's names (512 blocks: 0.3 s, 140,000
entries; 4,096 took 6.5 s), and the deepest published models have about 130. Names of blocks past it stay
unmapped and are listed."""
UNMAPPED_SHOWN = 5


def _gguf_names(names: list[str], report: Report, other: list[str]) -> tuple[list[str], list[str]] | str:
    """``names`` of a GGUF side renamed to the other side's Hugging Face names, and sentences saying so; or why
    not (gguf-py is not installed, or does not know the architecture), and the caller falls back to
    :data:`GGUF_TOP`/:data:`GGUF_BLOCK` for the Llama family.

    gguf-py's ``TensorNameMap`` (``gguf.get_tensor_name_map(arch, n_blocks)``, what llama.cpp's converter names
    tensors with) maps each of the other side's names to its GGUF name; a GGUF name is renamed to the other side's
    name that maps to it. The map is built for the blocks the file has (``blk.N``), not what its metadata claims."""
    from paramscope.text import safe

    arch = report.metadata.get("general.architecture")
    if not isinstance(arch, str):
        return "GGUF names not mapped: the file names no architecture (general.architecture)"
    try:
        import gguf
    except ImportError:
        return "GGUF names not mapped: gguf-py (pip install gguf) maps them for every architecture"
    which = next((key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch), None)
    if which is None:
        return f"GGUF names not mapped: gguf-py does not know the architecture {safe(arch)!r}"
    blocks = 0
    for name in names:
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and len(parts[1]) < 7:
            blocks = max(blocks, int(parts[1]) + 1)
    mapping = gguf.get_tensor_name_map(which, min(blocks, MAX_GGUF_BLOCKS))
    back: dict[str, str] = {}
    for name in other:
        found = mapping.get_name(name, try_suffixes=(".weight", ".bias"))
        if found is not None:
            back.setdefault(found, name)
    out = [back.get(n, n) for n in names]
    changed = sum(x != y for x, y in zip(names, out, strict=True))
    done = [f"{changed} GGUF names mapped to Hugging Face names (gguf-py's TensorNameMap for {safe(arch)})"]
    unmapped = [n for n in names if n not in back]
    if unmapped and other:
        shown = ", ".join(safe(n) for n in unmapped[:UNMAPPED_SHOWN]) + (", ..." if len(unmapped) > UNMAPPED_SHOWN
                                                                          else "")
        done.append(f"{len(unmapped)} GGUF names have no counterpart among the other side's names ({shown})")
    return out, done


def _drop_wrappers(name: str) -> str:
    parts = name.split(".")
    kept = [p for p in parts if p not in WRAPPER_COMPONENTS]
    return ".".join(kept) if len(kept) != len(parts) else name


def _normalise(a: list[str], b: list[str], ra: Report, rb: Report) -> tuple[list[str], list[str], list[str]]:
    """The normalised names of both sides (same order) and sentences saying what was done."""
    done: list[str] = []
    sides = []
    for label, names, report, other, other_report in (("A", a, ra, b, rb), ("B", b, rb, a, ra)):
        out = names
        if report.format == "gguf" and other_report.format != "gguf":
            mapped = _gguf_names(names, report, other)
            if not isinstance(mapped, str):
                out = mapped[0]
                done.extend(f"{label}: {line}" for line in mapped[1])
            elif _is_llama_gguf(report):
                out = [gguf_to_hf(n) for n in out]
                changed = sum(x != y for x, y in zip(names, out, strict=True))
                if changed:
                    done.append(f"{label}: {changed} GGUF names mapped to Hugging Face Llama names")
            else:
                done.append(f"{label}: {mapped}")
        stripped = [_drop_wrappers(n) for n in out]
        changed = sum(x != y for x, y in zip(out, stripped, strict=True))
        if changed:
            done.append(f"{label}: wrapper components ({', '.join(sorted(WRAPPER_COMPONENTS))}) dropped "
                        f"from {changed} names")
        out = stripped
        for prefix in LEADING_WRAPPERS:
            if out and all(n.startswith(prefix) for n in out):
                out = [n[len(prefix):] for n in out]
                done.append(f"{label}: leading {prefix!r} stripped from every name")
        sides.append(out)
    has_model = [any(n.startswith("model.") for n in side) for side in sides]
    if has_model[0] != has_model[1]:
        i = 0 if has_model[0] else 1
        count = sum(n.startswith("model.") for n in sides[i])
        sides[i] = [n[len("model."):] if n.startswith("model.") else n for n in sides[i]]
        done.append(f"{'AB'[i]}: leading 'model.' stripped from {count} names (only this side has it)")
    return sides[0], sides[1], done


# ---- the comparison -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """The headline figures of one side."""

    source: str
    format: str
    parameters: int
    trainable: int | None
    buffers: int
    bytes: int | None
    tensors: int


@dataclass(frozen=True)
class Change:
    """One name whose shape or dtype differs: A's value and B's value."""

    name: str
    a: Any
    b: Any


@dataclass(frozen=True)
class ModuleDelta:
    path: str
    a: int
    b: int

    @property
    def delta(self) -> int:
        return self.b - self.a


@dataclass(frozen=True)
class Diff:
    """What differs between A and B; see the module docstring for the rules."""

    a: Side
    b: Side
    normalized: bool
    normalisation: list[str]
    only_in_a: list[str]
    only_in_b: list[str]
    shape_changes: list[Change]
    dtype_changes: list[Change]
    tie_changes: list[Change]
    tie_covered: list[str]
    ignored_non_persistent: list[str]
    modules: list[ModuleDelta]
    notes: list[str] = field(default_factory=list)

    @property
    def missing_keys(self) -> list[str]:
        """In model A, not in checkpoint B: what ``load_state_dict(strict=True)`` calls missing."""
        return self.only_in_a

    @property
    def unexpected_keys(self) -> list[str]:
        """In checkpoint B, not in model A."""
        return self.only_in_b

    @property
    def shape_mismatches(self) -> list[Change]:
        return self.shape_changes

    @property
    def equivalent(self) -> bool:
        """Same names and shapes (ties as in the module docstring); dtypes may differ."""
        return not (self.only_in_a or self.only_in_b or self.shape_changes)

    @property
    def identical(self) -> bool:
        """Equivalent, and the same dtypes and tie groups too (what ``--strict`` asks)."""
        return self.equivalent and not (self.dtype_changes or self.tie_changes)

    def exit_code(self, strict: bool = False) -> int:
        return EXIT_SAME if (self.identical if strict else self.equivalent) else EXIT_DIFFERENT

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["modules"] = [{"path": m.path, "a": m.a, "b": m.b, "delta": m.delta} for m in self.modules]
        doc["equivalent"] = self.equivalent
        doc["identical"] = self.identical
        doc["missing_keys"] = self.missing_keys
        doc["unexpected_keys"] = self.unexpected_keys
        doc["shape_mismatches"] = doc["shape_changes"]
        return doc


def _side(report: Report) -> Side:
    return Side(report.source, report.format, report.total, report.trainable, report.buffers, report.bytes,
                len(report.tensors))


def _folded(ra: TensorRecord, rb: TensorRecord) -> bool:
    """Either record is a weight the ONNX reader named after the layer reading it (``extra["onnx_name"]``, see
    :mod:`paramscope.sources.onnx`): the exporter stored it as its layer computes with it, transposed."""
    return any(r.extra is not None and "onnx_name" in r.extra and r.shape is not None and len(r.shape) == 2
               for r in (ra, rb)) and ra.shape is not None and rb.shape is not None


def compare(a: Report, b: Report, *, normalize: bool = True) -> Diff:
    """Match A's and B's tensors by (normalised) name; A is the model, B the checkpoint."""
    recs_a = [r for r in a.tensors if r.role in COMPARED_ROLES]
    recs_b = [r for r in b.tensors if r.role in COMPARED_ROLES]
    names_a = [r.name for r in recs_a]
    names_b = [r.name for r in recs_b]
    done: list[str] = []
    if normalize:
        names_a, names_b, done = _normalise(names_a, names_b, a, b)
    notes: list[str] = []
    map_a = _by_name(recs_a, names_a, "A", notes)
    map_b = _by_name(recs_b, names_b, "B", notes)
    group_a = _groups(map_a)
    group_b = _groups(map_b)

    only_a, covered_a, ignored_a = _absent(map_a, group_a, map_b)
    only_b, covered_b, ignored_b = _absent(map_b, group_b, map_a)
    shapes: list[Change] = []
    dtypes: list[Change] = []
    # llama.cpp's converter stores some weights transposed (GPT-2's Conv1D c_attn/c_proj/c_fc become Linear-shaped:
    # convert_hf_to_gguf.py GPT2Model.modify_tensors): a mapped GGUF tensor of the reversed 2-D shape is the same one
    gguf_pair = normalize and (a.format == "gguf") != (b.format == "gguf")
    transposed = folded = 0
    for name, ra in map_a.items():
        rb = map_b.get(name)
        if rb is None:
            continue
        if ra.shape != rb.shape:
            if gguf_pair and ra.shape is not None and rb.shape is not None and ra.shape == rb.shape[::-1]:
                transposed += 1
            elif _folded(ra, rb) and ra.shape == rb.shape[::-1]:  # type: ignore[index]
                folded += 1
            else:
                shapes.append(Change(name, _shape(ra.shape), _shape(rb.shape)))
        if ra.dtype != rb.dtype:
            dtypes.append(Change(name, ra.dtype, rb.dtype))
    common = [n for n in map_a if n in map_b]
    ties_a = _tie_sets(common, group_a)
    ties_b = _tie_sets(common, group_b)
    tie_changes = [Change(n, sorted(ties_a.get(n, {n})), sorted(ties_b.get(n, {n})))
                   for n in common if ties_a.get(n, {n}) != ties_b.get(n, {n})]
    if transposed:
        notes.append(f"{transposed} GGUF tensors are stored transposed (as llama.cpp's converter writes them): "
                     "compared as the same shapes")
    if folded:
        notes.append(f"{folded} ONNX weights are stored transposed (torch.onnx folds a Linear's weight.T into one "
                     "initializer): compared as the same shapes")
    other_roles = [r.name for r in (*a.tensors, *b.tensors) if r.role not in COMPARED_ROLES]
    if other_roles:
        notes.append(f"{len(other_roles)} tensors that are neither parameters nor buffers (optimizer state, "
                     "quantization bookkeeping) are not compared")
    return Diff(
        a=_side(a),
        b=_side(b),
        normalized=normalize,
        normalisation=done,
        only_in_a=only_a,
        only_in_b=only_b,
        shape_changes=shapes,
        dtype_changes=dtypes,
        tie_changes=tie_changes,
        tie_covered=covered_a + covered_b,
        ignored_non_persistent=ignored_a + ignored_b,
        modules=_module_deltas(map_a, group_a, map_b, group_b),
        notes=notes,
    )


def _shape(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _by_name(records: list[TensorRecord], names: list[str], label: str, notes: list[str]) -> dict[str, TensorRecord]:
    out: dict[str, TensorRecord] = {}
    clashes = 0
    for record, name in zip(records, names, strict=True):
        if name in out:
            clashes += 1
            continue
        out[name] = record
    if clashes:
        notes.append(f"{label}: {clashes} names collide after normalisation; the first of each was kept")
    return out


def _groups(records: dict[str, TensorRecord]) -> dict[Hashable, list[str]]:
    groups: dict[Hashable, list[str]] = {}
    for name, record in records.items():
        groups.setdefault(record.tie_key, []).append(name)
    return groups


def _absent(
    mine: dict[str, TensorRecord], groups: dict[Hashable, list[str]], other: dict[str, TensorRecord]
) -> tuple[list[str], list[str], list[str]]:
    """Names of ``mine`` not in ``other``: (really absent, covered by a tie partner, non-persistent)."""
    absent, covered, ignored = [], [], []
    for name, record in mine.items():
        if name in other:
            continue
        if any(n in other for n in groups[record.tie_key]):
            covered.append(name)
        elif record.persistent is False:
            ignored.append(name)
        else:
            absent.append(name)
    return absent, covered, ignored


def _tie_sets(common: list[str], groups: dict[Hashable, list[str]]) -> dict[str, frozenset[str]]:
    """Name -> its tie group restricted to the names both sides have, for groups of two or more."""
    shared = set(common)
    out: dict[str, frozenset[str]] = {}
    for names in groups.values():
        kept = frozenset(n for n in names if n in shared)
        if len(kept) > 1:
            out.update(dict.fromkeys(kept, kept))
    return out


def _module_deltas(
    map_a: dict[str, TensorRecord], group_a: dict[Hashable, list[str]],
    map_b: dict[str, TensorRecord], group_b: dict[Hashable, list[str]],
) -> list[ModuleDelta]:
    counts_a = module_parameters(map_a, group_a.values(), map_b, MODULE_DEPTH)
    counts_b = module_parameters(map_b, group_b.values(), map_a, MODULE_DEPTH)
    paths = list(dict.fromkeys([*counts_a, *counts_b]))
    return [ModuleDelta(p, counts_a.get(p, 0), counts_b.get(p, 0)) for p in paths]
