"""What each tensor is for, by its module's class where a live model gives one and else by its name and shape.

A checkpoint file records no module classes, so ``--by type`` over a file had one "(unknown)" row. The
components here (embedding, attention, MLP, routed experts, router, norm, output head, convolution, other) are
read from the naming schemes of the formats paramscope meets, with ONE table (:data:`NAME_RULES`):

* Hugging Face transformers: Llama/Mistral/Qwen (``model.layers.N.self_attn.q_proj``, ``mlp.gate_proj``,
  ``input_layernorm``, ``embed_tokens``, ``lm_head``), GPT-2 (``h.N.attn.c_attn``, ``mlp.c_fc``, ``ln_1``,
  ``wte``/``wpe``), BERT (``attention.self.query``, ``intermediate.dense``, ``output.dense``, ``LayerNorm``,
  ``cls``, ``pooler``), T5 (``SelfAttention``, ``DenseReluDense.wi``/``wo``, ``shared``), Mixtral
  (``block_sparse_moe.experts.N.w1``, ``block_sparse_moe.gate``), DeepSeek (``mlp.experts``, ``mlp.gate``,
  ``shared_experts``, ``kv_a_proj_with_mqa``).
* GGUF (llama.cpp's names, gguf-py ``constants.TENSOR_NAMES``): ``token_embd``, ``blk.N.attn_q``/``attn_k``/
  ``attn_v``/``attn_output``, ``attn_norm``, ``ffn_norm``, ``ffn_gate``/``ffn_up``/``ffn_down``,
  ``ffn_gate_inp`` (router), ``ffn_*_exps`` (experts), ``ffn_*_shexp`` (shared expert), ``output_norm``,
  ``output``.
* timm / torchvision: ``conv1``, ``bn1``, ``downsample.0``/``downsample.1``, ``fc``, ``head``, ``patch_embed``,
  ``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv``, ``mlp.fc1``.

The rules are tried in the table's order and the first whose pattern matches a dotted part of the module
path wins (so ``q_norm`` inside an attention is a norm, ``shared_experts`` an MLP, ``experts.0.w1`` an expert).
Where no name decides, the module's weight shape does: a module whose weight has three or more dimensions is a
convolution, one whose weight is a vector a norm (torchvision's ``features.1``, ``downsample.1``).
Everything here is an inference from names, and every renderer that shows it says so.
"""

from __future__ import annotations

import functools
import re

EMBEDDING, ATTENTION, MLP, EXPERTS, ROUTER, NORM, HEAD, CONV, OTHER = (
    "embedding", "attention", "mlp", "experts", "router", "norm", "head", "conv", "other")
COMPONENTS = (EMBEDDING, ATTENTION, MLP, EXPERTS, ROUTER, NORM, HEAD, CONV, OTHER)
"""Every component, in the order a model is usually read."""

INFERRED = "component (inferred from names)"
"""How a renderer titles the component column: the classes are read from names, never recorded in a file."""

# (component, where: "part" = any dotted part of the module path, "top" = its first part, pattern fully matched,
# case ignored). First match wins, so the order is the precedence.
NAME_RULES: tuple[tuple[str, str, str], ...] = (
    # a norm anywhere: LayerNorm, input_layernorm, ln_1, ln_f, q_norm, attn_norm, output_norm, bn1, norm1
    (NORM, "part", r".*norm.*|ln(_\w+|\d*)|bn\d*"),
    # the output head: lm_head anywhere, and the classifier on top of a vision or encoder model
    (HEAD, "part", r"lm_head|embed_out|pooler"),
    (HEAD, "top", r"output|head|heads|fc|classifier|cls|score"),
    (EMBEDDING, "part", r".*embed.*|wte|wpe|shared|token_embd|cls_token|.*_embeddings"),
    # the router of a mixture of experts (before "experts": DeepSeek's gate sits beside them)
    (ROUTER, "part", r"gate|router|.*gate_inp.*|shared_expert_gate"),
    (EXPERTS, "part", r"experts|.*_exps"),
    (ATTENTION, "part", r".*attn.*|.*attention.*|[qkvo]_proj|query|key|value|qkv|wqkv|wq|wk|wv|"
                        r"q_[ab]_proj|kv_[ab]_proj.*"),
    (MLP, "part", r"mlp|.*ffn.*|feed_?forward|intermediate|output|densereludense|c_fc|c_proj|"
                  r"(gate_|up_|down_|gate_up_)proj|fc\d|w[123]|wi(_\d)?|wo|dense_h_to_4h|dense_4h_to_h|"
                  r"shared_experts?"),
    (CONV, "part", r"conv.*|downsample|stem"),
)

CLASS_RULES: tuple[tuple[str, str], ...] = (
    (EMBEDDING, r"Embedding|EmbeddingBag"),
    (CONV, r"(Lazy)?Conv(Transpose)?[123]d"),  # not transformers' Conv1D, which is GPT-2's linear layer
    (NORM, r".*Norm.*"),
)
"""A live module's class decides first where it is plain what the module is (an ``nn.Linear`` is not: its
name says whether it projects queries or feeds an MLP)."""

_PLAIN_LEAVES = frozenset({"weight", "bias"})


@functools.cache
def _compiled() -> tuple[list[tuple[str, str, re.Pattern[str]]], list[tuple[str, re.Pattern[str]]]]:
    # compiled on first use: only ``--by type`` over a file and the HTML page need them
    names = [(c, where, re.compile(p, re.IGNORECASE)) for c, where, p in NAME_RULES]
    classes = [(c, re.compile(p)) for c, p in CLASS_RULES]
    return names, classes


def classify(module: str, leaf: str = "weight", weight_ndim: int | None = None, type: str | None = None) -> str:
    """The component of tensor ``leaf`` of ``module`` (a dotted path, '' for the root), given the number of
    dimensions of that module's ``weight`` if it has one and its class if known."""
    names, classes = _compiled()
    if type is not None:
        for component, pattern in classes:
            if pattern.fullmatch(type):
                return component
    parts = module.split(".") if module else []
    if leaf not in _PLAIN_LEAVES:  # a parameter named for what it is (timm's cls_token, pos_embed)
        parts.append(leaf)
    found = OTHER
    for component, where, pattern in names:
        if where == "top":
            if parts and pattern.fullmatch(parts[0]):
                found = component
                break
        elif any(pattern.fullmatch(part) for part in parts):
            found = component
            break
    if weight_ndim == 1 and found in (CONV, OTHER):
        return NORM  # a vector weight: a norm's scale (BatchNorm in a torchvision Sequential)
    if weight_ndim is not None and weight_ndim >= 3 and found == OTHER:
        return CONV
    return found
