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
* Code from a config is never run, fetched or asked about: every key that names code (:data:`CODE_KEYS`:
  ``auto_map``, ``custom_pipelines``, a Hub attention/experts kernel) is removed at every level before
  transformers sees the config, ``AutoModel.from_config`` gets ``trust_remote_code=False``, and while
  building, transformers' remote-code entry points and ``input()`` raise (a guard: with the keys gone they
  are not reached). A model that only ``auto_map`` could supply (a ``model_type`` transformers does not
  know, none and ``architectures`` naming no transformers class, or a type ``AutoModel`` does not map) is
  refused before anything is built; for a type transformers builds itself, ``auto_map`` is ignored.
* Bounded work, before anything is built: the counts of repeated modules a config declares are bounded
  by the rule table :data:`COUNT_RULES` (building costs time per module, not per parameter: 10^15
  parameters on meta are fine, 10^6 layers are not), and so is the number of labels (transformers
  keeps a dict entry per label); widths (``hidden_size``, ``vocab_size``, positions) are not bounded:
  on meta they cost nothing, and a tensor past what torch can size is a one-line error. Count keys the
  table does not know are caught while building: more than :data:`MAX_MODULES` modules stop the build.
  The JSON is capped at :data:`MAX_CONFIG_BYTES` and its nesting depth at :data:`MAX_DEPTH`.
* The records are those of :func:`paramscope.sources.live.from_module` on the built model, re-labelled
  with format ``"config"``; the dtype is the one the config declares (``dtype``/``torch_dtype``), as
  ``from_config`` applies it.

The weights-vs-architecture fit is not read here: :mod:`paramscope.fit` compares the architecture with
weights beside its config (this reader only hands the directory on).
"""

from __future__ import annotations

from pathlib import Path

from paramscope import jsonlimits
from paramscope.errors import ParamscopeError, require
from paramscope.records import Inventory

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.sources.files import Reader

FORMAT = "config"
CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = jsonlimits.MAX_BYTES
"""A transformers config is a few KiB; anything past this is not one (and would only cost memory)."""
MAX_DEPTH = jsonlimits.MAX_DEPTH
"""Nesting of dicts and lists in the JSON (json's own parser recurses; composite configs nest 2-3 deep)."""
MAX_BLOCKS = 10_000
"""Most repeated modules one count may declare: building costs about a millisecond per layer."""
MAX_LABELS = 250_000
"""Most classification labels: transformers keeps a dict entry per label and copies it several times
while building (1,000,000 labels: 14 s and 1 GiB; 250,000: about 2 s). ImageNet-21k has 21,843."""
MAX_KEYS = 10_000
"""Most keys of one JSON object in a config (label maps aside: :data:`MAX_LABELS`). transformers makes every
key of a config an attribute and prints them all while building (1,300,000 keys in 15.8 MiB: 35 s);
real configs have a few hundred."""
MAX_VALUES = 1_000_000
"""Most values in all the objects and lists of a config (label maps aside): transformers copies, encodes
and prints the whole config several times while building, at about 4 us a value (a 16 MiB list of
8,000,000 zeros: 37 s)."""
MAX_LAYER_EXPERT_BLOCKS = 1_000_000
"""Most layers x experts: each expert is a module (or a slice of a fused one) of its own."""
MAX_MODULES = 250_000
"""Most modules one build may create: a backstop for counts under names :data:`COUNT_RULES` does not
know, and for many counts each under the bound. A module costs about 60 us and 4 KiB to build on meta,
so a build stopped here has taken ~15 s and ~1 GiB. Real models build a few thousand (Llama-2-70B
1,300, DeepSeek-V3 1,200 with transformers 5's fused experts); the one known real model past it is
switch-c-2048 (2,048 unfused experts x 30 layers: ~310,000 modules, 25 s, 1.2 GiB resident)."""

# The bound on what a config makes transformers repeat, one rule per row. A key matches a row when it is
# the row's word or ends with "_" + the word, in the config and in every sub-config (text_config,
# vision_config, ...): num_hidden_layers, decoder_layers, n_layer, depth, vision_config.depth, depths,
# num_blocks, num_experts, num_labels...
#   word -> (what it counts, how a value is read)
# An int is the count. A list of ints is read as "sum" (per-stage counts: ConvNeXt/Swin depths
# [3, 3, 27, 3]: the sum is the number of blocks) or "each" (layer indices, as in moe_layers or
# cross_attention_layers, or per-stage widths: its largest entry and its length are the count). A dict
# ("size": id2label) counts its entries. The count must be at most BOUNDS[what it counts]; across the
# whole config, the most layers x the most experts is at most MAX_LAYER_EXPERT_BLOCKS.
COUNT_RULES: dict[str, tuple[str, str]] = {
    "layers": ("layers", "each"),
    "layer": ("layers", "each"),  # n_layer (GPT-2)
    "depth": ("layers", "sum"),
    "depths": ("layers", "sum"),
    "blocks": ("layers", "sum"),
    "blocks_per_stage": ("layers", "sum"),
    "block_repeats": ("layers", "sum"),
    "stage_numb_of_layers": ("layers", "sum"),
    "repeats": ("layers", "sum"),
    "stages": ("layers", "sum"),
    "loops": ("layers", "sum"),
    "flows": ("layers", "sum"),
    "groups": ("layers", "each"),  # ALBERT's num_hidden_groups; GroupNorm's num_groups is small anyway
    "group_num": ("layers", "sum"),  # ALBERT's inner_group_num
    "per_block": ("layers", "sum"),  # Perceiver's num_self_attends_per_block
    "networks": ("layers", "sum"),  # MobileBERT's num_feedforward_networks (per layer)
    "heads": ("heads", "each"),
    "experts": ("experts", "sum"),
    "labels": ("labels", "each"),
    "id2label": ("labels", "size"),
    "label2id": ("labels", "size"),
}
BOUNDS = {"layers": MAX_BLOCKS, "experts": MAX_BLOCKS, "heads": MAX_BLOCKS, "labels": MAX_LABELS}
# Keys that name code transformers would fetch or run (custom classes, pipelines, Hub kernels): removed at
# every level of the config before transformers sees it.
CODE_KEYS = frozenset({
    "auto_map", "custom_pipelines", "trust_remote_code",
    "attn_implementation", "_attn_implementation", "_attn_implementation_internal",
    "experts_implementation", "_experts_implementation", "_experts_implementation_internal",
})
# transformers modules whose remote-code entry points are disabled while building (where imported).
REMOTE_CODE_MODULES = ("transformers.dynamic_module_utils", "transformers.models.auto.auto_factory",
                       "transformers.models.auto.configuration_auto")
REMOTE_CODE_FUNCTIONS = ("resolve_trust_remote_code", "get_class_from_dynamic_module")

UTF8_BOM = jsonlimits.UTF8_BOM


# ---- reading the file ---------------------------------------------------------------------------


def probe(head: bytes, path: Path) -> Reader | None:
    """A JSON object that is a transformers config: has ``model_type`` or ``architectures`` (parsed here
    once: the Reader builds from it).

    A file named ``config.json`` that starts like JSON (an object or an array) is claimed even when it
    does not parse, so that the user is told what is wrong with it rather than that the format is unknown.
    """
    from paramscope.sources.files import Reader

    body = head.removeprefix(UTF8_BOM).lstrip()
    if path.name == CONFIG_NAME and body[:1] in (b"{", b"["):
        return Reader(read_config_path, path)
    if not body.startswith(b"{"):
        return None
    try:
        config = load_json(path)
    except ParamscopeError:
        return None
    return Reader(read_config_path, path, config) if is_transformers_config(config) else None


def is_transformers_config(value: object) -> bool:
    """Whether a parsed JSON value is a transformers config (not a safetensors index, tokenizer config...)."""
    return isinstance(value, dict) and ("model_type" in value or "architectures" in value)


def load_json(path: Path) -> Any:
    """The parsed JSON of ``path``, bounded in size and nesting (:mod:`paramscope.jsonlimits`);
    ParamscopeError on anything wrong."""
    try:
        return jsonlimits.load(path, MAX_CONFIG_BYTES, MAX_DEPTH)
    except jsonlimits.JSONLimitError as exc:
        raise ParamscopeError(path, _one_line(str(exc))) from None


def read(path: Path) -> Inventory:
    """A config file, see :func:`read_config_path` (what a :func:`probe`'s Reader reads)."""
    return read_config_path(path)


def read_config_path(path: Path, config: Any = None) -> Inventory:
    """The architecture a ``config.json`` describes (``config``: its JSON when a probe parsed it already),
    built on meta.

    Its directory is handed on (``pending["weights_beside"]``): when it also holds weights that paramscope
    reads as a directory, the fit stage (:mod:`paramscope.fit`, run by :mod:`paramscope.pipeline`) reads
    them and compares them with the architecture.
    """
    if config is None:
        config = load_json(path)
    if not isinstance(config, dict):
        raise ParamscopeError(path, f"a transformers config is a JSON object, got {type(config).__name__}")
    inventory = from_config(config, source=str(path))
    return inventory.replace(pending={**inventory.pending, "weights_beside": path.parent})


# ---- building the model -------------------------------------------------------------------------


def from_config(config: dict[str, Any], *, source: str, trust_remote_code: bool = False) -> Inventory:
    """Records of the model ``config`` describes, built with transformers on the meta device.

    ``trust_remote_code`` is accepted for callers that pass it along, but paramscope never runs code
    from a model repository: a config that needs custom code is refused whatever its value.
    """
    if not isinstance(config, dict):
        raise ParamscopeError(source, f"a transformers config is a JSON object, got {type(config).__name__}")
    _check_blocks(config, source)
    torch = require("torch", extra="transformers", source=source, purpose="building a model from its config")
    transformers = require("transformers", extra="transformers", source=source,
                           purpose="building a model from its config")
    from paramscope.sources.live import from_module

    clean = _without_code(config)
    with _quiet(transformers), _sealed(source):
        hf_config, model_type = _make_config(transformers, clean, source, trust_remote_code, config)
        model_class, note = _model_class(transformers, clean, hf_config, model_type, source, config)
        try:
            # Weight initialisation fills values the meta device does not hold: skipping it builds 2-4x
            # faster. It is also where transformers ties the head to the embedding, so that is done after.
            with torch.device("meta"), _no_init_weights(transformers):
                if model_class is None:
                    model = transformers.AutoModel.from_config(hf_config, trust_remote_code=False)
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
    declared = config.get("transformers_version")
    if isinstance(declared, str):
        metadata["config_transformers_version"] = declared
    notes = [f"architecture built on the meta device from the config ({type(model).__name__}): "
             "the counts are the architecture's, not those of any weights"]
    if note:
        notes.append(note)
    if "auto_map" in config:
        notes.append("the config's auto_map (the repository's own code) was not run: transformers' built-in "
                     f"{model_type!r} architecture was built")
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        method = quant.get("quant_method")
        named = f" ({_quote(method)})" if isinstance(method, str) else ""
        notes.append(f"quantization_config{named} is not applied: the counts are of the unquantized architecture")
    # the config is handed on: the rules stage reads expert counts from it (paramscope.pipeline.settle)
    return inventory.replace(format=FORMAT, metadata=metadata, notes=[*notes, *inventory.notes],
                             pending={**inventory.pending, "config": config})


def _without_code(value: Any) -> Any:
    """A copy of the config without :data:`CODE_KEYS`, at every level (sub-configs are built by
    transformers' own ``AutoModel.from_config`` calls, which we cannot pass ``trust_remote_code`` to)."""
    if isinstance(value, dict):
        return {k: _without_code(v) for k, v in value.items() if k not in CODE_KEYS}
    if isinstance(value, list):
        return [_without_code(v) for v in value]
    return value


def _make_config(
    transformers: Any, config: dict[str, Any], source: str, trust_remote_code: bool, original: dict[str, Any]
) -> tuple[Any, str]:
    """The transformers config object and its model type; refuses types that need custom code.

    ``config`` is the one without code keys; ``original`` only says whether ``auto_map`` was there."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type is None:
        arch_class = _architecture_class(transformers, config)
        config_class = getattr(arch_class, "config_class", None) if arch_class is not None else None
        model_type = getattr(config_class, "model_type", None)
        if not isinstance(model_type, str) or not model_type:
            raise ParamscopeError(source, "config has no 'model_type', and its 'architectures' name no transformers "
                                  "model" + _custom_code_hint(original, trust_remote_code))
    if not isinstance(model_type, str):
        raise ParamscopeError(source, f"'model_type' must be a string, got {type(model_type).__name__}")
    if model_type not in CONFIG_MAPPING:
        reason = f"model_type {_quote(model_type)} is not known to transformers {transformers.__version__}"
        raise ParamscopeError(source, reason + _custom_code_hint(original, trust_remote_code))
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
    transformers: Any, config: dict[str, Any], hf_config: Any, model_type: str, source: str,
    original: dict[str, Any],
) -> tuple[Any, str | None]:
    """(class to build, or None for AutoModel; a note when ``architectures[0]`` could not be used).

    Refuses, before anything is built, a type that neither ``architectures[0]`` nor ``AutoModel`` gives a
    transformers class for: only the repository's own code (``auto_map``) could build it."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    archs = config.get("architectures")
    cls = _architecture_class(transformers, config)
    if cls is not None:
        config_class = getattr(cls, "config_class", None)
        if isinstance(config_class, type) and isinstance(hf_config, config_class):
            return cls, None
    if model_type not in MODEL_MAPPING_NAMES:
        raise ParamscopeError(source, f"transformers {transformers.__version__} has no model class for model_type "
                              f"{_quote(model_type)} (AutoModel does not map it, and 'architectures' names none)"
                              + _custom_code_hint(original))
    if isinstance(archs, list) and archs:
        named = archs[0] if isinstance(archs[0], str) else repr(archs[0])
        return None, (f"architectures[0] {_quote(named)} is not a transformers class for {model_type!r}; "
                      "built the base model (AutoModel) instead")
    return None, None


# ---- bounds -------------------------------------------------------------------------------------


def _count_rule(key: object) -> tuple[str, str, str] | None:
    """(word, what it counts, list reading) of the :data:`COUNT_RULES` row ``key`` matches, or None."""
    if not isinstance(key, str):
        return None
    for word, (kind, reading) in COUNT_RULES.items():
        if key == word or key.endswith("_" + word):
            return word, kind, reading
    return None


def _check_blocks(config: dict[str, Any], source: str) -> None:
    """Refuse configs whose counts of repeated modules would make the build take unbounded time
    (:data:`COUNT_RULES`), or that hold more than :data:`MAX_KEYS` keys in one object or :data:`MAX_VALUES`
    values in all; the message names the field, with its path inside sub-configs."""
    most = {"layers": 0, "experts": 0}
    stack: list[tuple[Any, str, int]] = [(config, "", 0)]
    values = 0
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParamscopeError(source, f"config nested deeper than {MAX_DEPTH} levels")
        values += len(value)
        if values > MAX_VALUES:
            raise ParamscopeError(source, f"the config holds more than {MAX_VALUES:,} values (label maps aside): "
                                  "not a real config")
        if isinstance(value, dict) and len(value) > MAX_KEYS:
            raise ParamscopeError(source, f"{_quote(where) if where else 'the config'} has {len(value):,} keys: "
                                  f"more than {MAX_KEYS:,} is not a real config")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            rule = _count_rule(key)
            if rule is not None and rule[2] == "size" and isinstance(item, dict):
                count = len(item)
            elif rule is not None and isinstance(item, list) and all(_is_int(i) for i in item):
                count = _list_count(item, rule[2])
            elif rule is not None and _is_int(item):
                count = item
            else:
                if isinstance(item, (dict, list)):
                    stack.append((item, _path(where, key), depth + 1))
                continue
            bound = BOUNDS[rule[1]]
            if count > bound:
                raise ParamscopeError(source, f"{_quote(_path(where, key))} = {_shown(item, rule[2])}: more than "
                                      f"{bound:,} {rule[1]} is not a real model, and building it would take "
                                      "unbounded time")
            if rule[1] in most and (rule[2] == "sum" or not isinstance(item, list)):
                most[rule[1]] = max(most[rule[1]], count)
    if most["layers"] * most["experts"] > MAX_LAYER_EXPERT_BLOCKS:
        raise ParamscopeError(source, f"{most['layers']:,} layers x {most['experts']:,} experts is more than "
                              f"{MAX_LAYER_EXPERT_BLOCKS:,} blocks: refused, building it would take unbounded time")


def _path(where: str, key: object) -> str:
    """``where.key`` or ``where[index]``: a field's place in the config, made only where it is shown or walked
    (not for each of up to a million leaf values)."""
    return where + (f"[{key}]" if isinstance(key, int) else f".{key}" if where else str(key))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_count(values: list[int], reading: str) -> int:
    """What a list under a count key amounts to: its sum, or (indices, widths) its largest entry or length."""
    if reading == "sum":
        return sum(v for v in values if v > 0)
    return max([len(values), *values])


def _shown(value: int | list[int] | dict[Any, Any], reading: str) -> str:
    if isinstance(value, dict):
        return f"a mapping of {len(value):,} entries"
    if not isinstance(value, list):
        return f"{value:,}"
    if len(value) <= 4:
        return "[" + ", ".join(f"{v:,}" for v in value) + "]"
    what = f"summing to {_list_count(value, reading):,}" if reading == "sum" else f"largest {max(value):,}"
    return f"a list of {len(value):,} entries, {what}"


class _CodeRequested(BaseException):
    """Raised by the guards of :class:`_sealed`. A BaseException, so that transformers' own ``except
    Exception`` (around its prompt) cannot turn it into a question or a retry."""


class _TooManyModules(BaseException):
    """Raised by :class:`_sealed`'s module counter past :data:`MAX_MODULES`."""


class _sealed:
    """While building: transformers' remote-code entry points (:data:`REMOTE_CODE_FUNCTIONS` in
    :data:`REMOTE_CODE_MODULES`, where imported) and ``input()`` raise instead of fetching or prompting,
    and more than :data:`MAX_MODULES` module registrations stop the build. Either ends as one
    ParamscopeError naming ``source``; everything is restored on exit."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.saved: list[tuple[Any, str, Any]] = []
        self.handle: Any = None
        self.modules = 0

    def __enter__(self) -> None:
        import builtins
        import sys

        import torch

        def refuse(*args: object, **kwargs: object) -> None:
            raise _CodeRequested

        targets = [(sys.modules.get(name), attr) for name in REMOTE_CODE_MODULES for attr in REMOTE_CODE_FUNCTIONS]
        for owner, attr in [*targets, (builtins, "input")]:
            if owner is not None and hasattr(owner, attr):
                self.saved.append((owner, attr, getattr(owner, attr)))
                setattr(owner, attr, refuse)
        self.handle = torch.nn.modules.module.register_module_module_registration_hook(self._count)

    def _count(self, module: Any, name: str, submodule: Any) -> None:
        self.modules += 1
        if self.modules > MAX_MODULES:
            raise _TooManyModules

    def __exit__(self, kind: object, exc: object, trace: object) -> bool:
        self.handle.remove()
        for owner, attr, original in reversed(self.saved):
            setattr(owner, attr, original)
        if isinstance(exc, _CodeRequested):
            raise ParamscopeError(self.source, "transformers asked to run the model repository's own code, "
                                  "which paramscope never does: refused") from None
        if isinstance(exc, _TooManyModules):
            raise ParamscopeError(self.source, f"the architecture has more than {MAX_MODULES:,} modules: not a real "
                                  "model, the build was stopped") from None
        return False


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
