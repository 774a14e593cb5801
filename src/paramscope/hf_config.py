"""What a Hugging Face ``config.json`` changes about counting a checkpoint's tensors.

A header read alone cannot know that an int32 ``qweight`` holds eight 4-bit weights per element, that a
model routes each token through 2 of its 8 experts, or that a file's ``lm_head.weight`` is a saved copy
of the tied input embedding. :func:`apply_config` adds those facts to an :class:`Inventory`:

* packed quantization (:mod:`paramscope.quantization`): packed weights carry a ``QuantInfo`` so they count
  as their logical weights; scales, zero points and the like become ``Role.QUANT_AUX``;
* mixture of experts (:mod:`paramscope.moe`): ``metadata["moe"]``, from the config or GGUF key/values;
* ties the config declares (``tie_word_embeddings``) between an output head and the input embedding a
  file stores twice: both names get one tie key, so the report counts them once.

The rules stage (:func:`paramscope.pipeline.settle`) calls it on every inventory read from checkpoint
headers; readers never do. Without a config and with nothing recognisable the inventory comes back as it
was, after one pass over the names with a C-level suffix test (a 100,000-tensor read is benchmarked).
"""

from __future__ import annotations

from paramscope import moe, quantization
from paramscope.gcpause import paused_gc
from paramscope.records import Role

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from paramscope.records import Inventory, Table, TensorRecord

# Output heads a tied model may store as a copy of its input embedding, and the embeddings they tie to,
# across the families whose files we see (Llama/Mistral/Qwen, GPT-2, GPT-NeoX, OPT, BLOOM, Falcon,
# Gemma, T5, BERT-style MLM heads, GGUF).
HEADS = ("lm_head.weight", "output.weight", "embed_out.weight", "cls.predictions.decoder.weight")
EMBEDDINGS = (
    "model.embed_tokens.weight", "transformer.wte.weight", "wte.weight", "token_embd.weight",
    "gpt_neox.embed_in.weight", "model.decoder.embed_tokens.weight", "transformer.word_embeddings.weight",
    "transformer.embed_tokens.weight", "shared.weight", "model.language_model.embed_tokens.weight",
    "language_model.model.embed_tokens.weight", "bert.embeddings.word_embeddings.weight", "embed_tokens.weight",
    "model.tok_embeddings.weight", "tok_embeddings.weight",
)
TIE_KEYS = ("tie_word_embeddings",)


def _tensors(n: int, what: str = "tensor") -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def apply_config(inventory: Inventory, config: dict[str, Any] | None) -> Inventory:
    """The inventory with quantization, expert counts and config-declared ties applied (see module doc).

    ``config`` is what a reader found beside the weights (``inventory.pending["config"]``, the pipeline
    passes it) or None; the few small tensors packed quantization may need come from the reader too
    (``inventory.pending["small_tensors"]``). A new inventory is returned; the given one is not changed."""
    metadata = inventory.metadata
    notes = inventory.notes
    changed = False
    tensors: list[TensorRecord] | None = None  # the records, made only where a rule may change one
    table: Table | None = None  # or the columns with a few entries changed (an inventory read as columns)

    annotated = None
    if quantization.candidates(inventory.names):  # the common file has no quantization suffix at all
        blobs = inventory.pending.get("small_tensors")  # the reader's, where it can read small tensors' bytes
        cq = quantization.config_scheme(config)
        with paused_gc():  # 100,000 new records would wake the collector a hundred times for nothing
            if inventory.columnar:  # records are made only for the candidates' modules
                columns = inventory.table
                prior = "quant" in columns.sparse or Role.QUANT_AUX in columns.roles
                found = quantization.changes(columns.names, columns.row, cq, blobs, prior)
                if found is not None:
                    change, summary = found
                    table = columns.repacked(change)
                    annotated = (None, summary)
            else:
                annotated = quantization.annotate(inventory.tensors, cq, blobs)
    if annotated is not None:
        tensors, summary = annotated
        metadata = {**metadata, "quantization": summary}
        bits = summary["bits"]
        shown = f" {bits}-bit" if isinstance(bits, int) else (" " + "/".join(map(str, bits)) + "-bit" if bits else "")
        packed, aux = summary["quantized_tensors"], summary["bookkeeping_tensors"]
        said = []
        if packed:
            said.append(f"{_tensors(packed)} packed as {summary['scheme']}{shown} count their logical weights")
        if aux:
            said.append(f"{_tensors(aux, 'bookkeeping tensor')} (scales, zero points, ...) reported apart")
        new_notes = ["; ".join(said)] if said else []
        ambiguous = summary.get("ambiguous")
        if ambiguous:
            new_notes.append(
                f"{len(ambiguous)} {summary['scheme']} tensors (e.g. {ambiguous[0]}) have shapes that fit several "
                "bit widths and group sizes, and no config says which: they count their stored elements"
            )
        notes = [*notes, *(n for n in new_notes if n not in notes)]  # applying twice changes nothing
        changed = True

    experts = moe.from_config(config) or moe.from_gguf(metadata)
    if experts is not None and metadata.get("moe") != experts:
        metadata = {**metadata, "moe": experts}
        changed = True

    if tensors is not None:
        names, rows = [r.name for r in tensors], (lambda: tensors)
    elif table is not None:
        names, rows = table.names, table.rows
    else:
        names, rows = inventory.names, (lambda: inventory.tensors)
    tied = _tie(names, rows, config) if _declares_tie(config) else None
    if tied is not None:
        tensors, (head, embedding) = tied
        notes = [*notes, f"config.json ties {head} to {embedding} (tie_word_embeddings): counted once"]
        changed = True

    if not changed:
        return inventory
    if tensors is None and table is not None:
        return inventory.replace(table=table, metadata=metadata, notes=notes)
    if tensors is None:  # only the metadata changed: the tensors (columns or records) go on as they are
        return inventory.replace(metadata=metadata, notes=notes)
    return inventory.replace(tensors=tensors, metadata=metadata, notes=notes)


def _declares_tie(config: dict[str, Any] | None) -> bool:
    """The config's own value only: with the key absent we do not guess the model type's default."""
    if not isinstance(config, dict):
        return False
    for scope in (config, config.get("text_config")):
        if isinstance(scope, dict):
            for key in TIE_KEYS:
                if key in scope:
                    return scope[key] is True
    return False


def _tie(
    names: list[str], rows: Callable[[], list[TensorRecord]], config: dict[str, Any] | None
) -> tuple[list[TensorRecord], tuple[str, str]] | None:
    """Both names of a declared, stored-twice embedding/head pair under one tie key, or None. ``names`` are the
    tensors' names as the rules so far left them, ``rows()`` their records (made only if a head is there)."""
    wanted = {*HEADS, *EMBEDDINGS}
    index = {name: i for i, name in enumerate(names) if name in wanted}
    if not any(head in index for head in HEADS):
        return None
    tensors = rows()
    for head_name in HEADS:
        h = index.get(head_name)
        if h is None:
            continue
        head = tensors[h]
        for embedding_name in EMBEDDINGS:
            e = index.get(embedding_name)
            if e is None:
                continue
            embedding = tensors[e]
            if embedding.shape != head.shape or embedding.dtype != head.dtype:
                continue
            if head.tie is not None and head.tie == embedding.tie:
                return None  # the file already says so
            key = embedding.tie if embedding.tie is not None else ("tie_word_embeddings", embedding_name)
            out = list(tensors)
            out[e] = embedding.replace(tie=key)
            out[h] = head.replace(tie=key)
            if h < e:  # the first name seen is the group's canonical one: make it the embedding
                out.insert(h, out.pop(e))
            return out, (head_name, embedding_name)
    return None
