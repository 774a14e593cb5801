"""Ties: which names of a checkpoint are one tensor of the model, found from what the file and its config say.

A tie group counts once in ``total`` (:mod:`paramscope.report`); what the file holds is a separate fact. Each
rule below says which names form a group and whether the file stores the tensor once or more than once:

* **an alias the file declares** (``safetensors.torch.save_model`` / ``save_file`` of a model with shared
  tensors): the writer keeps one name and records each removed one in ``__metadata__`` as
  ``{removed: kept}`` (safetensors ``torch.py``, ``_remove_duplicate_names`` and ``save_model``). The removed
  name is put back as an alias of the kept tensor: stored once.
* **a GGUF head stored twice**: llama.cpp's old converter wrote ``output.weight`` as a copy of
  ``token_embd.weight`` for GPT-2 and MPT (``convert-hf-to-gguf.py``: ``GPT2Model`` and ``MPTModel``, "output
  is tied to (same as) wte in original model"; current converters write ``lm_head`` only when the checkpoint
  has it, llama.cpp issue #12567): with the two equal in shape and type, they are one group whose second name
  is a *stored copy* (:data:`STORED_COPY`). Any other architecture's equal pair is a tie only when a config
  says so (below).
* **a GGUF head left out**: for the architectures whose llama.cpp loader uses ``token_embd.weight`` as the
  output head when ``output.weight`` is absent (:data:`GGUF_HEAD_FALLBACK`, llama.cpp 0c1e57098bba
  ``src/models/*.cpp`` ``load_arch_tensors``: ``TENSOR_DUPLICATED`` of ``LLM_TENSOR_TOKEN_EMBD``),
  ``output.weight`` is put back as an alias: stored once.
* **a tie the config declares** (``tie_word_embeddings: true``): a head and an embedding of equal shape and
  dtype the file stores under both names are one group, the head a stored copy (a ``.bin`` whose two names
  share one storage is already one group: stored once); a head the file left out (``save_pretrained`` drops
  the tied copy) is put back as an alias when ``architectures`` names a class with a language-model head
  (:data:`HEAD_CLASSES`). A head torch.onnx folded (``extra["onnx_name"]``: stored as its MatMul reads it,
  transposed) ties in its transposed shape.
* **a head stored as its embedding transposed** (torch.onnx with ``do_constant_folding``, the default, folds
  ``Transpose(wte)`` into an initializer of its own, so the file alone shows no tie): a learned ``[D, V]`` tensor
  whose elements equal an embedding table's ``[V, D]`` (a Gather's data) at :data:`TRANSPOSE_SAMPLES` fixed
  positions, ``head[j, i] == table[i, j]``, compared as stored bytes, is a stored copy. The reader hands on
  ``pending["elements"]``, which reads those few elements at their offsets (about 8 KB of fp32, never the
  tensors); a tensor it cannot read (external data) is not compared. A head that differs from the table only
  away from the sampled positions would be taken for a copy: a trained head differs almost everywhere.

Every group lists its embedding first (the canonical name, as a live model lists it), so every route shows the
same group. A stored copy keeps its own bytes: ``stored_elements`` and ``bytes`` describe the file, ``total``
the model (see :mod:`paramscope.report`).
"""

from __future__ import annotations

from paramscope.records import Role, TensorRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from paramscope.records import Inventory

STORED_COPY = "stored_copy"
"""Key of ``TensorRecord.extra`` (value True) on a tied name whose tensor the file stores a second time."""

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

GGUF_HEAD, GGUF_EMBEDDING = "output.weight", "token_embd.weight"
GGUF_STORED_TWICE = frozenset({"gpt2", "mpt"})
"""``general.architecture`` values whose llama.cpp converter wrote the tied head as a second copy: the old
``convert-hf-to-gguf.py`` ``GPT2Model`` ("GPT2 output is tied to (same as) wte in original model") and
``MPTModel``. Current converters write ``lm_head`` only when the checkpoint has it (llama.cpp issue #12567), so
for any other architecture a stored ``output.weight`` equal to ``token_embd.weight`` in shape and type is a
tie only when a config.json says so (:func:`_config_tie`)."""
GGUF_HEAD_FALLBACK = frozenset({
    # ``output`` optional (TENSOR_NOT_REQUIRED), then ``token_embd`` again with TENSOR_DUPLICATED
    "afmoe", "arcee", "arctic", "bailingmoe3", "bloom", "chameleon", "chatglm", "cogvlm", "cohere2moe", "deci",
    "deepseek", "deepseek2", "deepseek2-ocr", "deepseek32", "dflash", "dots3note", "dream", "ernie4_5",
    "ernie4_5-moe", "exaone", "exaone4", "falcon", "falcon-h1", "gemma-embedding", "gemma3", "gemma3n", "gemma4",
    "glm-dsa", "glm4", "glm4moe", "gpt2", "granite", "granite_swa", "granitehybrid", "granitemoe", "graniteswitch",
    "grok", "grovemoe", "hrm_text", "hunyuan-dense", "hunyuan-moe", "hunyuan_vl", "hy_v3", "jais2", "laguna",
    "lfm2", "lfm2moe", "llada", "llama", "llama-embed", "llama4", "maincoder", "mamba", "mamba2", "minicpm",
    "minicpm3", "minimax-01", "mistral3", "mistral4", "mpt", "nanbeige", "nemotron_h", "nemotron_h_moe", "olmo",
    "paddleocr", "pangu-embedded", "phi3", "plamo2", "plamo3", "qwen2", "qwen2vl", "qwen3", "qwen35", "qwen35moe",
    "qwen3moe", "qwen3next", "qwen3tts", "qwen3vl", "qwen3vlmoe", "qwen4exp", "refact", "rnd1", "seed_oss",
    "smallthinker", "smollm3", "spark2_5", "starcoder", "starcoder2", "t5", "t5encoder", "jamba",
    # ``token_embd`` always: no ``output`` tensor is read
    "gemma", "gemma2", "command-r", "cohere2", "openelm", "plm", "pockettts", "gemma4-assistant", "bitnet",
})
"""Architectures whose llama.cpp loader reads ``token_embd.weight`` as the head when ``output.weight`` is absent.
Read from llama.cpp 0c1e57098bba (October 2026), ``src/models/*.cpp`` ``load_arch_tensors``: for the first group
``output`` is ``TENSOR_NOT_REQUIRED`` and, when missing, ``token_embd`` is created again with
``TENSOR_DUPLICATED``; the second group never reads an ``output`` tensor. Only these: an architecture not listed
keeps what its file stores (its head left out is a head it does not have, as far as we know)."""
HEAD_CLASSES = {"ForCausalLM": "lm_head.weight", "LMHeadModel": "lm_head.weight",
                "ForConditionalGeneration": "lm_head.weight"}
"""Endings of a transformers model class that has a language-model head, and the name of its weight."""
TRANSPOSE_SAMPLES = 1024
"""Positions compared to call a head its embedding transposed: 1,024 elements of each (4 KB of fp32)."""
MAX_TRANSPOSED = 16
"""(embedding, head) pairs of equal transposed shape compared per file (a model has one head per table)."""
MAX_ALIASES = 4096
"""``__metadata__`` entries considered as aliases (a model shares a handful of tensors; more is not a model)."""


def declares_tie(config: dict[str, Any] | None) -> bool:
    """The config's own value only: with the key absent we do not guess the model type's default."""
    if not isinstance(config, dict):
        return False
    for scope in (config, config.get("text_config")):
        if isinstance(scope, dict):
            for key in TIE_KEYS:
                if key in scope:
                    return scope[key] is True
    return False


def is_stored_copy(record: TensorRecord) -> bool:
    extra = record.extra
    return extra is not None and extra.get(STORED_COPY) is True


def apply(inventory: Inventory, config: dict[str, Any] | None) -> Inventory:
    """``inventory`` with the ties its file and config state (module docstring), and a note for each; the same
    inventory when there are none. Cheap when nothing applies: only a few names are looked up."""
    names = inventory.names
    present = _WANTED.intersection(names)  # the few heads and embeddings named, found in C
    aliases = _declared_aliases(inventory, names)
    gguf = inventory.format == "gguf" and (GGUF_HEAD in present or GGUF_EMBEDDING in present)
    declared = declares_tie(config) and any(name in present for name in EMBEDDINGS)
    transposed = _transposed_candidates(inventory)
    if not (aliases or gguf or declared or transposed):  # the common file: its columns are not turned into records
        return inventory
    tensors = list(inventory.tensors)
    notes: list[str] = []
    changed = False
    if aliases:
        tensors = _add_aliases(tensors, aliases, notes)
        changed = True
    if gguf:
        done = _gguf(tensors, inventory.metadata, notes)
        changed = changed or done
    if declared:
        done = _config_tie(tensors, config, notes)  # type: ignore[arg-type]
        changed = changed or done
    if transposed:
        done = _transposed_copy(tensors, transposed, inventory.pending["elements"], notes)
        changed = changed or done
    if not changed:
        return inventory
    fresh = [n for n in notes if n not in inventory.notes]
    return inventory.replace(tensors=tensors, notes=[*inventory.notes, *fresh])


_WANTED = frozenset({*HEADS, *EMBEDDINGS})


def _declared_aliases(inventory: Inventory, names: list[str]) -> list[tuple[str, str]]:
    """(removed name, kept name) pairs of a safetensors ``__metadata__`` alias map: a value that names a tensor
    of the file under a key that does not (``"format": "pt"`` names none)."""
    declared = inventory.metadata.get("__metadata__")
    if inventory.format != "safetensors" or not isinstance(declared, dict) or not declared:
        return []
    pairs = [(k, v) for k, v in list(declared.items())[:MAX_ALIASES] if k != "format" and k != v]
    if not pairs:  # the common ``{"format": "pt"}``: no set of 100,000 names is built for it
        return []
    present = set(names)
    out = []
    for key, value in pairs:
        if isinstance(key, str) and isinstance(value, str) and value in present and key not in present:
            out.append((key, value))
    return out


def _key(record: TensorRecord) -> Any:
    return record.tie if record.tie is not None else ("tie", record.name)


def _add_aliases(tensors: list[TensorRecord], aliases: list[tuple[str, str]], notes: list[str]) -> list[TensorRecord]:
    """Each removed name back as an alias of the kept tensor, listed beside it (the embedding first)."""
    position = {r.name: i for i, r in enumerate(tensors)}
    added: dict[int, list[TensorRecord]] = {}
    for alias, kept in aliases:
        i = position[kept]
        record = tensors[i]
        key = _key(record)
        tensors[i] = record = record.replace(tie=key)
        added.setdefault(i, []).append(record.replace(name=alias, extra=None))
        notes.append(f"{alias} is stored as {kept} (safetensors __metadata__ alias): counted once")
    out: list[TensorRecord] = []
    for i, record in enumerate(tensors):
        group = [record, *added.get(i, ())]
        group.sort(key=lambda r: r.name not in EMBEDDINGS)  # the embedding first: the group's canonical name
        out.extend(group)
    return out


def _tie_pair(tensors: list[TensorRecord], head: int, embedding: int, copy: bool) -> None:
    """Make ``tensors[head]`` one group with ``tensors[embedding]`` (in place), the embedding listed first."""
    emb = tensors[embedding]
    key = _key(emb)
    tensors[embedding] = emb.replace(tie=key)
    extra = {**(tensors[head].extra or {}), STORED_COPY: True} if copy else tensors[head].extra
    tensors[head] = tensors[head].replace(tie=key, extra=extra)
    if head < embedding:
        tensors.insert(head, tensors.pop(embedding))


def _gguf(tensors: list[TensorRecord], metadata: dict[str, Any], notes: list[str]) -> bool:
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):  # a key/value of any GGUF type: only a string names an architecture
        return False
    position = {r.name: i for i, r in enumerate(tensors) if r.name in (GGUF_HEAD, GGUF_EMBEDDING)}
    e, h = position.get(GGUF_EMBEDDING), position.get(GGUF_HEAD)
    if e is None or tensors[e].role is not Role.PARAMETER:
        return False
    if h is not None:
        head, emb = tensors[h], tensors[e]
        if arch not in GGUF_STORED_TWICE or head.shape != emb.shape or head.dtype != emb.dtype:
            return False
        if head.tie is not None and head.tie == emb.tie:
            return False
        _tie_pair(tensors, h, e, copy=True)
        notes.append(f"{GGUF_HEAD} is a stored copy of {GGUF_EMBEDDING} (llama.cpp writes {arch}'s tied head "
                     "twice): counted once")
        return True
    if arch not in GGUF_HEAD_FALLBACK:
        return False
    emb = tensors[e].replace(tie=_key(tensors[e]))
    tensors[e] = emb
    tensors.insert(e + 1, emb.replace(name=GGUF_HEAD, extra=None))
    notes.append(f"no {GGUF_HEAD}: llama.cpp uses {GGUF_EMBEDDING} as {arch}'s output head (tied)")
    return True


def _transposed_candidates(inventory: Inventory) -> list[tuple[str, str]]:
    """(embedding, head) name pairs that may be one tensor stored twice, the head transposed: an embedding table
    (a record of owner ``Embedding``, ``[V, D]``) and an untied learned record ``[D, V]`` of its dtype, in a file
    whose reader can read a few of their elements (``pending["elements"]``: ONNX initializers). Few records are
    tables: only their shapes are looked up."""
    if "elements" not in inventory.pending:
        return []
    tensors = inventory.tensors
    tables = [r for r in tensors if r.owner_type == "Embedding" and r.tie is None and r.shape is not None
              and len(r.shape) == 2 and r.role is Role.PARAMETER]
    if not tables:
        return []
    wanted = {(r.shape[::-1], r.dtype): r.name for r in tables}  # type: ignore[index]
    pairs = []
    for r in tensors:
        if r.role is Role.PARAMETER and r.owner_type is None and r.tie is None and r.shape is not None:
            table = wanted.get((r.shape, r.dtype))
            if table is not None and len(pairs) < MAX_TRANSPOSED:
                pairs.append((table, r.name))
    return pairs


def sample_positions(rows: int, cols: int, count: int = TRANSPOSE_SAMPLES) -> list[tuple[int, int]]:
    """``count`` deterministic (i, j) positions of a ``rows`` x ``cols`` matrix, spread over it (Weyl sequences
    of the golden ratio: neither rows nor columns repeat in a pattern an exporter could align with), the two
    corners included; every position when the matrix has no more."""
    if rows * cols <= count:
        return [(i, j) for i in range(rows) for j in range(cols)]
    out = [(0, 0), (rows - 1, cols - 1)]
    for k in range(1, count - 1):
        out.append((int(k * 0.6180339887498949 * rows) % rows, int(k * 0.7548776662466927 * cols) % cols))
    return out


def _transposed_copy(tensors: list[TensorRecord], pairs: list[tuple[str, str]], read: Any, notes: list[str]) -> bool:
    """Each head whose elements equal its embedding's, transposed, at :data:`TRANSPOSE_SAMPLES` positions: a
    stored copy (module docstring). Elements are compared as stored bytes: equal bytes are equal values."""
    changed = False
    for table, head in pairs:
        position = {r.name: i for i, r in enumerate(tensors) if r.name in (table, head)}
        e, h = position.get(table), position.get(head)
        if e is None or h is None or tensors[h].tie is not None:
            continue
        rows, cols = tensors[e].shape  # type: ignore[misc]
        positions = sample_positions(rows, cols)
        mine = read(table, [i * cols + j for i, j in positions])
        theirs = read(head, [j * rows + i for i, j in positions])
        if mine is None or theirs is None or mine != theirs:
            continue
        _tie_pair(tensors, h, e, copy=True)
        notes.append(f"{head} is a stored copy of {table}, transposed (equal at {len(positions):,} sampled "
                     "positions): counted once")
        changed = True
    return changed


def _head_class(config: dict[str, Any]) -> str | None:
    classes = config.get("architectures")
    if not isinstance(classes, list):
        return None
    for cls in classes[:16]:
        if isinstance(cls, str):
            for ending, head in HEAD_CLASSES.items():
                if cls.endswith(ending):
                    return head
    return None


def _config_tie(tensors: list[TensorRecord], config: dict[str, Any], notes: list[str]) -> bool:
    """The declared embedding/head tie (module docstring); False when the file already says it or has no pair."""
    position = {r.name: i for i, r in enumerate(tensors) if r.name in _WANTED}
    for head_name in HEADS:
        h = position.get(head_name)
        if h is None:
            continue
        head = tensors[h]
        for embedding_name in EMBEDDINGS:
            e = position.get(embedding_name)
            if e is None:
                continue
            embedding = tensors[e]
            folded = head.extra is not None and "onnx_name" in head.extra and embedding.shape is not None
            if embedding.dtype != head.dtype or (
                    embedding.shape != head.shape and not (folded and head.shape == embedding.shape[::-1])):
                continue
            if head.tie is not None and head.tie == embedding.tie:
                return False  # the file already says so (one storage, or a rule above)
            _tie_pair(tensors, h, e, copy=True)
            notes.append(f"config.json ties {head_name} to {embedding_name} (tie_word_embeddings): {head_name} is a "
                         "stored copy, counted once")
            return True
    if any(name in position for name in HEADS):
        return False
    head_name = _head_class(config)
    if head_name is None:
        return False
    for embedding_name in EMBEDDINGS:
        e = position.get(embedding_name)
        if e is not None and tensors[e].role is Role.PARAMETER:
            emb = tensors[e] = tensors[e].replace(tie=_key(tensors[e]))
            tensors.insert(e + 1, emb.replace(name=head_name, extra=None))
            notes.append(f"config.json ties {head_name} to {embedding_name} (tie_word_embeddings), and the file "
                         f"leaves the head out: {head_name} is {embedding_name}")
            return True
    return False
