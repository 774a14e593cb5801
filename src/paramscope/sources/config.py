"""Source: a transformers ``config.json``, built into the real architecture on the meta device.

Why build instead of computing: only the module itself knows every tensor it has and which ones are
tied (``tie_word_embeddings``, shared encoders, per-model quirks); a formula per architecture would go
stale with every transformers release. On the meta device no weight memory is allocated, so a 70B model
builds in a fraction of a second once transformers is imported.

Rules
-----
* Nothing is downloaded and no ``from_pretrained`` is ever called: the config class comes from
  transformers' own table for the ``model_type`` and is filled from the dict (``from_dict``, what
  ``AutoConfig.from_pretrained`` does after reading the file).
* The model class is ``architectures[0]`` when transformers has that class and it takes this config
  (so ``GPT2LMHeadModel`` brings its tied ``lm_head``); otherwise the ``AutoModel`` of the model type.
* Code from a config is never run: a ``model_type`` transformers does not know (custom code via
  ``auto_map``) is refused; for a known type, ``auto_map`` is ignored and the built-in class used.
* Bounded work: a config declaring more than :data:`MAX_BLOCKS` layers or experts is refused before
  anything is built (building costs time per module, not per parameter: 10^15 parameters on meta
  are fine, 10^6 layers are not). The JSON is capped at :data:`MAX_CONFIG_BYTES` and its nesting
  depth at :data:`MAX_DEPTH`.
* The records are those of :func:`paramscope.sources.live.from_module` on the built model, re-labelled
  with format ``"config"``; the dtype is the one the config declares (``dtype``/``torch_dtype``), as
  ``from_config`` applies it.

Weights-vs-architecture fit (:func:`fit`) compares the architecture with the tensors of a checkpoint as
``load_state_dict(strict=True)`` would, through :func:`paramscope.diff.compare` (ties, non-persistent
buffers and the ``model.`` prefix handled there), after stripping the model's ``base_model_prefix``
(``transformer.``, ``bert.``, ``model.``) from whichever side alone carries it, since a base-class
checkpoint lacks it and a head-class one has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from paramscope.errors import ParamscopeError, require
from paramscope.records import Inventory, TensorRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = "config"
CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 16 << 20
"""A transformers config is a few KiB; anything past this is not one (and would only cost memory)."""
MAX_DEPTH = 64
"""Nesting of dicts and lists in the JSON (json's own parser recurses; composite configs nest 2-3 deep)."""
MAX_BLOCKS = 10_000
"""Most layers (or experts) one config may declare: building costs about a millisecond per block."""
MAX_LAYER_EXPERT_BLOCKS = 1_000_000
"""Most layers x experts: each expert is a module (or a slice of a fused one) of its own."""

NOTE_NAMES = 3
"""Names of missing/unexpected/mismatched tensors quoted in the fit note (all are in metadata["fit"])."""

# Keys that count repeated modules, by what they count. Matched exactly, in the config and in every
# sub-config dict (text_config, vision_config, ...).
BLOCK_COUNT_KEYS = {
    "num_hidden_layers": "layers",
    "num_layers": "layers",
    "n_layer": "layers",
    "n_layers": "layers",
    "encoder_layers": "layers",
    "decoder_layers": "layers",
    "num_encoder_layers": "layers",
    "num_decoder_layers": "layers",
    "num_local_experts": "experts",
    "num_experts": "experts",
    "n_routed_experts": "experts",
    "moe_num_experts": "experts",
    "n_shared_experts": "experts",
}

UTF8_BOM = b"\xef\xbb\xbf"


# ---- reading the file ---------------------------------------------------------------------------


def sniff(head: bytes, path: Path) -> bool:
    """A JSON object that is a transformers config: has ``model_type`` or ``architectures``.

    A file named ``config.json`` that starts like JSON (an object or an array) is claimed even when it
    does not parse, so that the user is told what is wrong with it rather than that the format is unknown.
    """
    body = head.removeprefix(UTF8_BOM).lstrip()
    if path.name == CONFIG_NAME and body[:1] in (b"{", b"["):
        return True
    if not body.startswith(b"{"):
        return False
    try:
        return is_transformers_config(load_json(path))
    except ParamscopeError:
        return False


def is_transformers_config(value: object) -> bool:
    """Whether a parsed JSON value is a transformers config (not a safetensors index, tokenizer config...)."""
    return isinstance(value, dict) and ("model_type" in value or "architectures" in value)


def load_json(path: Path) -> Any:
    """The parsed JSON of ``path``, bounded in size and nesting; ParamscopeError on anything wrong."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ParamscopeError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ParamscopeError(path, f"larger than {MAX_CONFIG_BYTES >> 20} MiB: not a transformers config")
    _check_nesting(data, path)
    try:
        return json.loads(data.removeprefix(UTF8_BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ParamscopeError(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:  # json.JSONDecodeError, and int strings past the digit limit
        raise ParamscopeError(path, f"malformed JSON: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ParamscopeError(path, "malformed JSON: nested too deeply") from None


def _check_nesting(data: bytes, path: Path) -> None:
    """Refuse JSON nested deeper than :data:`MAX_DEPTH` before the (recursive) parser sees it.

    Brackets inside strings are skipped; the scan is linear and only counts, so a hostile file costs
    one pass over at most :data:`MAX_CONFIG_BYTES`.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return  # cannot be deeper than the number of openers: the common case, no scan
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                raise ParamscopeError(path, f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def read(path: Path) -> Inventory:
    """The reader entry point (``paramscope.sources.files``): a config file, see :func:`read_config_path`."""
    return read_config_path(path)


def read_config_path(path: Path) -> Inventory:
    """The architecture a ``config.json`` describes, built on meta; its fit with weights beside it.

    When the config's directory also holds weights that paramscope reads as a directory (safetensors
    shards or an index), they are compared with the architecture: ``metadata["fit"]`` and a note.
    """
    config = load_json(path)
    if not isinstance(config, dict):
        raise ParamscopeError(path, f"a transformers config is a JSON object, got {type(config).__name__}")
    inventory = from_config(config, source=str(path))
    try:
        weights = _weights_beside(path)
    except ParamscopeError as exc:  # the architecture was asked for: broken weights beside it are a note
        inventory.notes.insert(0, f"weights beside the config not compared: {exc}")
        return inventory
    if weights is not None:
        _add_fit(inventory, weights, path.parent)
    return inventory


def _weights_beside(path: Path) -> Inventory | None:
    """The checkpoint in the config's directory, read torch-free, or None when there is none."""
    from paramscope.sources import files

    directory = path.parent
    if not files.directory_has_weights(directory):
        return None
    return files.read_weights_directory(directory)


# ---- building the model -------------------------------------------------------------------------


def from_config(config: dict[str, Any], *, source: str, trust_remote_code: bool = False) -> Inventory:
    """Records of the model ``config`` describes, built with transformers on the meta device.

    ``trust_remote_code`` is accepted for callers that pass it along, but paramscope never runs code
    from a model repository: a config that needs custom code is refused whatever its value.
    """
    if not isinstance(config, dict):
        raise ParamscopeError(source, f"a transformers config is a JSON object, got {type(config).__name__}")
    _check_blocks(config, source)
    torch = require("torch", extra="torch", source=source, purpose="building a model from its config")
    transformers = require("transformers", extra="transformers", source=source,
                           purpose="building a model from its config")
    from paramscope.sources.live import from_module

    with _quiet(transformers):
        hf_config, model_type = _make_config(transformers, config, source, trust_remote_code)
        model_class, note = _model_class(transformers, config, hf_config, model_type, source)
        try:
            # Weight initialisation fills values the meta device does not hold: skipping it builds 2-4x
            # faster. It is also where transformers ties the head to the embedding, so that is done after.
            with torch.device("meta"), _no_init_weights(transformers):
                if model_class is None:
                    model = transformers.AutoModel.from_config(hf_config)
                else:
                    model = model_class._from_config(hf_config)
            tie = getattr(model, "tie_weights", None)
            if callable(tie):
                tie()
        except Exception as exc:  # third-party code on input we do not control: one line, never a trace
            raise ParamscopeError(
                source, f"transformers could not build {model_type!r}: {type(exc).__name__}: {_one_line(str(exc))}"
            ) from None
    inventory = from_module(model, source=source)
    metadata: dict[str, Any] = {
        "model_type": model_type,
        "class": type(model).__name__,
        "base_model_prefix": getattr(model, "base_model_prefix", "") or "",
        "dtype": str(getattr(hf_config, "dtype", None) or "float32").removeprefix("torch."),
        "transformers": transformers.__version__,
    }
    from paramscope import moe

    experts = moe.from_config(config)  # total vs active per token: the architecture is the whole story here
    if experts is not None:
        metadata["moe"] = experts
    declared = config.get("transformers_version")
    if isinstance(declared, str):
        metadata["config_transformers_version"] = declared
    notes = [f"architecture built on the meta device from the config ({type(model).__name__}): "
             "the counts are the architecture's, not those of any weights"]
    if note:
        notes.append(note)
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        method = quant.get("quant_method")
        named = f" ({_quote(method)})" if isinstance(method, str) else ""
        notes.append(f"quantization_config{named} is not applied: the counts are of the unquantized architecture")
    return inventory.replace(format=FORMAT, metadata=metadata, notes=[*notes, *inventory.notes])


def _make_config(transformers: Any, config: dict[str, Any], source: str, trust_remote_code: bool) -> tuple[Any, str]:
    """The transformers config object and its model type; refuses types that need custom code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type is None:
        arch_class = _architecture_class(transformers, config)
        config_class = getattr(arch_class, "config_class", None) if arch_class is not None else None
        model_type = getattr(config_class, "model_type", None)
        if not isinstance(model_type, str) or not model_type:
            raise ParamscopeError(source, "config has no 'model_type', and its 'architectures' name no transformers "
                                  "model" + _custom_code_hint(config))
    if not isinstance(model_type, str):
        raise ParamscopeError(source, f"'model_type' must be a string, got {type(model_type).__name__}")
    if model_type not in CONFIG_MAPPING:
        reason = f"model_type {_quote(model_type)} is not known to transformers {transformers.__version__}"
        raise ParamscopeError(source, reason + _custom_code_hint(config, trust_remote_code))
    fields = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return CONFIG_MAPPING[model_type].from_dict(fields), model_type
    except Exception as exc:
        raise ParamscopeError(
            source, f"transformers rejects this {model_type!r} config: {type(exc).__name__}: {_one_line(str(exc))}"
        ) from None


def _no_init_weights(transformers: Any) -> Any:
    """transformers' ``no_init_weights`` context (``transformers.initialization`` in 5.x, ``modeling_utils``
    before), or a no-op where neither has it."""
    import contextlib
    import importlib

    for module in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            found = getattr(importlib.import_module(module), "no_init_weights", None)
        except ImportError:
            continue
        if found is not None:
            return found()
    return contextlib.nullcontext()


def _custom_code_hint(config: dict[str, Any], trust_remote_code: bool = False) -> str:
    if "auto_map" not in config:
        return ""
    asked = " (trust_remote_code is not honoured)" if trust_remote_code else ""
    return f"; it needs the model repository's own code (auto_map), which paramscope does not run{asked}"


def _architecture_class(transformers: Any, config: dict[str, Any]) -> Any:
    """The transformers model class named by ``architectures[0]``, or None.

    The name comes from the file, so it is looked up only when it is a plain public identifier, and the
    result is kept only when it is a ``PreTrainedModel`` subclass.
    """
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        return None
    name = archs[0]
    if not name.isidentifier() or name.startswith("_") or len(name) > 200:
        return None
    try:
        found = getattr(transformers, name, None)
    except Exception:  # the lazy module failed to import that model's file (a missing optional dependency)
        return None
    if isinstance(found, type) and issubclass(found, transformers.PreTrainedModel):
        return found
    return None


def _model_class(
    transformers: Any, config: dict[str, Any], hf_config: Any, model_type: str, source: str
) -> tuple[Any, str | None]:
    """(class to build, or None for AutoModel; a note when ``architectures[0]`` could not be used)."""
    archs = config.get("architectures")
    cls = _architecture_class(transformers, config)
    if cls is not None:
        config_class = getattr(cls, "config_class", None)
        if isinstance(config_class, type) and isinstance(hf_config, config_class):
            return cls, None
    if isinstance(archs, list) and archs:
        named = archs[0] if isinstance(archs[0], str) else repr(archs[0])
        return None, (f"architectures[0] {_quote(named)} is not a transformers class for {model_type!r}; "
                      "built the base model (AutoModel) instead")
    return None, None


# ---- bounds -------------------------------------------------------------------------------------


def _check_blocks(config: dict[str, Any], source: str) -> None:
    """Refuse configs whose layer or expert counts would make the build take unbounded time."""
    most = {"layers": 0, "experts": 0}
    stack: list[tuple[Any, int]] = [(config, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParamscopeError(source, f"config nested deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
                continue
            kind = BLOCK_COUNT_KEYS.get(key) if isinstance(key, str) else None
            if kind is None or not isinstance(item, int) or isinstance(item, bool):
                continue
            if item > MAX_BLOCKS:
                raise ParamscopeError(source, f"{key} = {item:,}: more than {MAX_BLOCKS:,} {kind} is not a real "
                                      "model, and building it would take unbounded time")
            most[kind] = max(most[kind], item)
    if most["layers"] * most["experts"] > MAX_LAYER_EXPERT_BLOCKS:
        raise ParamscopeError(source, f"{most['layers']:,} layers x {most['experts']:,} experts is more than "
                              f"{MAX_LAYER_EXPERT_BLOCKS:,} blocks: refused, building it would take unbounded time")


class _quiet:
    """Warnings and log records silenced while building: deprecation notices of transformers, and what
    optional packages it imports print when they load (torchao's missing kernels), would otherwise reach
    the CLI's stderr around the report. Restored on exit."""

    def __init__(self, transformers: Any) -> None:
        self.logging = transformers.logging
        self.level: int | None = None
        self.disabled = 0
        self.warnings: Any = None

    def __enter__(self) -> None:
        import logging
        import warnings

        self.level = self.logging.get_verbosity()
        self.logging.set_verbosity_error()
        self.disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        import logging

        self.warnings.__exit__(*exc)
        logging.disable(self.disabled)
        self.logging.set_verbosity(self.level)


def _quote(text: str) -> str:
    from paramscope.text import safe

    return repr(safe(text[:200]))


def _one_line(message: str) -> str:
    from paramscope.text import one_line

    return one_line(message, limit=300)  # transformers' messages can run to pages


# ---- weights vs architecture --------------------------------------------------------------------


def fit(architecture: Inventory, weights: Inventory) -> dict[str, list[Any]]:
    """What ``load_state_dict(strict=True)`` of ``weights`` into ``architecture`` would report.

    ``{"missing": [...], "unexpected": [...], "mismatched": [(name, arch_shape, file_shape), ...]}``;
    names normalised as in the module docstring, tied heads absent from the file not missing.
    """
    from paramscope.diff import compare
    from paramscope.report import Report

    prefix = architecture.metadata.get("base_model_prefix") or ""
    arch, file = _strip_one_sided_prefix(architecture, weights, prefix)
    result = compare(Report(arch), Report(file))
    return {
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
        "mismatched": [(c.name, _tuple(c.a), _tuple(c.b)) for c in result.shape_mismatches],
    }


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)


def _strip_one_sided_prefix(a: Inventory, b: Inventory, prefix: str) -> tuple[Inventory, Inventory]:
    """Drop ``prefix.`` from the side that alone has it (a head class's checkpoint vs a base class's)."""
    if not prefix or prefix == "model":  # "model." is paramscope.diff's own rule
        return a, b
    lead = prefix + "."
    has = [any(r.name.startswith(lead) for r in inv.tensors) for inv in (a, b)]
    if has[0] == has[1]:
        return a, b
    sides = [a, b]
    i = 0 if has[0] else 1
    sides[i] = sides[i].replace(tensors=[_renamed(r, r.name[len(lead):]) if r.name.startswith(lead) else r
                                         for r in sides[i].tensors])
    return sides[0], sides[1]


def _renamed(record: TensorRecord, name: str) -> TensorRecord:
    return TensorRecord(name, record.shape, record.dtype, record.role, record.trainable, record.tie,
                        record.owner_type, record.persistent, record.quant, record.origin, record.extra)


def _add_fit(inventory: Inventory, weights: Inventory, directory: Path) -> None:
    """Put the fit of ``weights`` into ``inventory.metadata["fit"]`` and one sentence into its notes."""
    result = fit(inventory, weights)
    inventory.metadata["fit"] = result
    inventory.metadata["weights"] = weights.source
    where = os.fspath(directory)
    if not any(result.values()):
        count = sum(1 for r in weights.tensors if r.role.value in ("parameter", "buffer"))
        inventory.notes.insert(0, f"weights in {where} fit the architecture: {count:,} tensors")
        return
    parts = []
    for key, label in (("missing", "missing"), ("unexpected", "unexpected"), ("mismatched", "shape-mismatched")):
        items = result[key]
        if items:
            names = [i[0] if isinstance(i, tuple) else i for i in items[:NOTE_NAMES]]
            more = ", ..." if len(items) > NOTE_NAMES else ""
            parts.append(f"{len(items):,} {label} ({', '.join(_quote(n) for n in names)}{more})")
    inventory.notes.insert(0, f"weights in {where} do not fit the architecture: {'; '.join(parts)}")
