"""What a Hugging Face ``config.json`` changes about counting a checkpoint's tensors.

A header read alone cannot know that an int32 ``qweight`` holds eight 4-bit weights per element, that a
model routes each token through 2 of its 8 experts, or that a file's ``lm_head.weight`` is a saved copy
of the tied input embedding. :func:`apply_config` adds those facts to an :class:`Inventory`:

* packed quantization (:mod:`paramscope.quantization`): packed weights carry a ``QuantInfo`` so they count
  as their logical weights; scales, zero points and the like become ``Role.QUANT_AUX``;
* mixture of experts (:mod:`paramscope.moe`): ``metadata["moe"]``, from the config or GGUF key/values;
* ties (:mod:`paramscope.ties`): the ones the file declares (a safetensors ``__metadata__`` alias, a GGUF
  head llama.cpp stores twice or leaves out) and the one the config declares (``tie_word_embeddings``).

The rules stage (:func:`paramscope.pipeline.settle`) calls it on every inventory read from checkpoint
headers; readers never do. Without a config and with nothing recognisable the inventory comes back as it
was, after one pass over the names with a C-level suffix test (a 100,000-tensor read is benchmarked).
"""

from __future__ import annotations

from paramscope import moe, quant_names, ties
from paramscope.gcpause import paused_gc
from paramscope.records import Role

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.records import Inventory, Table, TensorRecord

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
    if quant_names.candidates(inventory.names):  # the common file has no quantization suffix at all
        from paramscope import quantization

        blobs = inventory.pending.get("small_tensors")  # the reader's, where it can read small tensors' bytes
        cq = quantization.config_scheme(config)
        with paused_gc():  # 100,000 new records would wake the collector a hundred times for nothing
            if inventory.columnar:  # records are made only for the candidates' modules
                columns = inventory.table
                prior = "quant" in columns.sparse or Role.QUANT_AUX in columns.role_set()
                found = quantization.changes(columns.names, columns.row, cq, blobs, prior,
                                             (columns.dtypes, columns.shapes), columns.fact("distinct"),
                                             columns.modules())  # made once: the report's by_type takes them too
                if found is not None:
                    change, summary = found
                    table = columns.repacked(change)  # (it takes the modules)
                    # the raw table outlives the rules (the small-tensor reader holds its inventory): the report
                    # drops the modules from the new table once done with them, so none stay held here (9 MB)
                    columns.forget_modules()
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

    if changed:
        if tensors is None and table is not None:
            inventory = inventory.replace(table=table, metadata=metadata, notes=notes)
        elif tensors is None:  # only the metadata changed: the tensors (columns or records) go on as they are
            inventory = inventory.replace(metadata=metadata, notes=notes)
        else:
            inventory = inventory.replace(tensors=tensors, metadata=metadata, notes=notes)
    return ties.apply(inventory, config)
