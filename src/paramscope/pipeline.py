"""The stages between a source and a report: read, apply the rules, count.

1. A reader (:func:`paramscope.sources.open_source`) turns what the user names into an
   :class:`~paramscope.records.Inventory`: records as observed, plus ``pending`` (what the rules need: a
   ``config.json`` found beside the weights, a reader of a few small tensors, an architecture's directory).
2. :func:`settle` applies the rules to it, each returning a new inventory: for weights read from headers,
   :func:`paramscope.hf_config.apply_config` (packed quantization, mixture of experts, declared ties);
   for an architecture built from a config, its expert counts (:mod:`paramscope.moe`) and the fit of
   the weights beside it (:mod:`paramscope.fit`); for a live module, only the summary of the quantized
   weights its reader found (their records already say what they are).
   Every kind gets its architecture card (:mod:`paramscope.architecture`) from the same hand-on: the
   config dict, a live model's ``config.to_dict()``, or GGUF key/values.
3. :class:`~paramscope.report.Report` counts the settled inventory.

Readers never call a rule and rules never open a file: this module is the one place both meet.
"""

from __future__ import annotations

from paramscope.errors import ParamscopeError
from paramscope.report import Report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from paramscope.records import Inventory

LIVE_FORMAT = "torch.nn.Module"
"""A live module's inventory: what the module holds is already what it counts; no rule applies."""
ARCHITECTURE_FORMAT = "config"
"""An architecture built from a config.json (:data:`paramscope.sources.config.FORMAT`)."""


def read(
    source: Any,
    *,
    example_input: Any = None,
    device: str = "meta",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    progress: Callable[..., None] | None = None,
) -> Inventory:
    """``source`` read (:func:`paramscope.sources.open_source`, same arguments) and settled (:func:`settle`)."""
    from paramscope.sources import open_source

    return settle(open_source(source, example_input=example_input, device=device, args=args, kwargs=kwargs,
                              progress=progress))


def settle(inventory: Inventory) -> Inventory:
    """``inventory`` with the rules applied that its kind of source calls for (see the module docstring),
    and its architecture card (:func:`architecture_of`)."""
    if inventory.format == LISTING_FORMAT:  # each listed model is settled, card and all, on its own
        return _with_listed_parameters(inventory)
    card = architecture_of(inventory)
    if inventory.format == LIVE_FORMAT:
        settled = _with_module_quantization(inventory)
    elif inventory.format == ARCHITECTURE_FORMAT:
        settled = _with_fit(_with_experts(inventory))
    else:
        from paramscope.hf_config import apply_config

        settled = apply_config(inventory, inventory.pending.get("config"))
    return settled if card is None else settled.replace(architecture=card)


GGUF_FORMAT = "gguf"
LISTING_FORMAT = "gguf-listing"
"""A Hub repository of several GGUF models, listed (:data:`paramscope.sources.hub.GGUF_LISTING`)."""


def one_model(report: Report) -> Report:
    """``report``, unless it lists a repository's GGUF models: what needs one model (memory, diff, a scan row)
    then says, in one line, how to name one."""
    if report.format == LISTING_FORMAT:
        listed = len(report.metadata.get("gguf.files") or [])
        raise ParamscopeError(report.source, f"a repository of {listed} GGUF models: name one, as "
                                             f"{report.source}:FILE or --file FILE ('paramscope {report.source}' "
                                             "lists them)")
    return report


def _with_listed_parameters(inventory: Inventory) -> Inventory:
    """A listing whose rows say each model's parameters as its own report would (ties applied: a head
    llama.cpp reads from the embedding, a head stored as a copy), each model settled as if it were named."""
    models = inventory.pending.get("gguf.models") or []
    rows = [{**row, "parameters": None if model is None else Report(settle(model)).total}
            for row, model in zip(inventory.metadata.get("gguf.files", []), models, strict=True)]
    pending = {k: v for k, v in inventory.pending.items() if k != "gguf.models"}
    return inventory.replace(metadata={**inventory.metadata, "gguf.files": rows}, pending=pending)


def architecture_of(inventory: Inventory) -> Any:
    """The card of what the reader handed on: GGUF key/values, a config.json (beside the weights or the
    architecture itself), or a live model's own config; None where the source states no architecture."""
    config = inventory.pending.get("config")
    live = inventory.pending.get("model_config")
    if inventory.format != GGUF_FORMAT and not isinstance(config, dict) and not isinstance(live, dict):
        return None  # nothing to build a card from: the module (and dataclasses, inspect, ast) is not imported
    from paramscope import architecture

    if inventory.format == GGUF_FORMAT:
        return architecture.from_gguf(inventory.metadata)
    if isinstance(config, dict):  # the file as read comes first: it needs no transformers to be believed
        return architecture.from_config(config)
    return architecture.from_config(live, source="live")


def _with_module_quantization(inventory: Inventory) -> Inventory:
    """A live module whose reader found quantized weights, with ``metadata["quantization"]`` summarised
    as a file's is (:func:`paramscope.quantization.summary_of`), marked ``"from": "module"``."""
    if not inventory.pending.get("module_quantization"):
        return inventory
    from paramscope.quantization import summary_of

    summary = summary_of(inventory.tensors)
    if summary is None:
        return inventory
    return inventory.replace(metadata={**inventory.metadata, "quantization": {**summary, "from": "module"}})


def _with_experts(inventory: Inventory) -> Inventory:
    """An architecture with its config's expert counts (total vs active per token): the architecture is
    the whole story here, so the config alone is asked."""
    from paramscope import moe

    experts = moe.from_config(inventory.pending.get("config"))
    if experts is None:
        return inventory
    return inventory.replace(metadata={**inventory.metadata, "moe": experts})


def _with_fit(inventory: Inventory) -> Inventory:
    """An architecture compared with the weights in its config's directory, when a weights reader claims
    that directory; weights that cannot be read are a note (the architecture was what was asked for)."""
    directory = inventory.pending.get("weights_beside")
    if directory is None:
        return inventory
    from paramscope.sources import files

    try:
        if not files.directory_has_weights(directory):
            return inventory
        weights = files.read_weights_directory(directory)
    except ParamscopeError as exc:
        return inventory.replace(notes=[f"weights beside the config not compared: {exc}", *inventory.notes])
    from paramscope.fit import with_fit

    return with_fit(inventory, weights, directory)


def count(model: Any, *, trainable_only: bool = False) -> int:
    """``sum(p.numel() for p in model.parameters() [if p.requires_grad])``, each shared tensor once.

    Lazy modules' uninitialized parameters count 0 (see :func:`inspect` with ``input_shape``).
    """
    from paramscope.sources.live import from_module

    report = Report(from_module(model))
    return report.trainable if trainable_only else report.total  # type: ignore[return-value]


def inspect(
    source: Any,
    *,
    example_input: Any = None,
    input_shape: Sequence[int] | None = None,
    device: str = "meta",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    filter: str | None = None,
    trainable_only: bool = False,
    include_buffers: bool = True,
    exclude_embeddings: bool = False,
    progress: Callable[..., None] | None = None,
) -> Report:
    """A :class:`Report` on ``source``: an ``nn.Module``, a checkpoint path, ``"file.py:Name"`` or
    ``"package.module:Name"`` (built on ``device``, meta by default, with ``args``/``kwargs``).

    ``example_input`` or ``input_shape`` materialise lazy modules by a dry run on the meta device.
    ``filter`` (a glob on tensor names), ``trainable_only``, ``include_buffers`` and
    ``exclude_embeddings`` narrow the report; see :meth:`Report.filter`.
    """
    inventory = read(
        source,
        example_input=example_input if example_input is not None else (tuple(input_shape) if input_shape else None),
        device=device,
        args=args,
        kwargs=kwargs,
        progress=progress,
    )
    report = Report(inventory)
    if filter is not None or trainable_only or not include_buffers or exclude_embeddings:
        report = report.filter(
            pattern=filter,
            trainable_only=trainable_only,
            include_buffers=include_buffers,
            exclude_embeddings=exclude_embeddings,
        )
    return report
