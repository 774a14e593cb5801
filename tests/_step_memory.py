"""Measure one training step (forward + backward) of a live model: its activation peak and its FLOPs.

Shared by tests/test_activations.py, tests/test_flops.py and bench/bench_training.py.

**Activation peak** (what paramscope.activations estimates), defined exactly: during one forward and
backward pass (``loss = model(ids, labels=ids).loss; loss.backward()``, the model output dropped before
backward as Trainer does, ``use_cache=False``, gradients ``None`` before the step, no optimizer step),
every tensor storage an operator creates is recorded with its size when it is created and when it is
freed (a TorchDispatchMode sees every operator output; a weakref on the storage sees it die). Storages
that end the step as a parameter's ``.grad`` are gradients, not activations: they are left out. The
activation peak is the largest sum of live recorded bytes at any instant. Parameters, the input ids and
anything made before the step were never recorded. Storages an operator allocates and frees inside its
own kernel are not seen (they are not tensors).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveStorages(TorchDispatchMode):
    """Records (+bytes, serial) when an operator's output storage first appears and (-bytes, serial) when it dies.

    ``existing``: tensors made before the step (parameters, buffers, inputs); views of them are not new.
    A storage is known by a serial number, not ``id()``, which Python reuses once an object dies.
    """

    def __init__(self, existing: list[torch.Tensor] = ()) -> None:
        super().__init__()
        self.events: list[tuple[int, int]] = []
        self.names: dict[int, str] = {}
        self.serial: dict[int, int] = {}
        self._keep = [t.untyped_storage() for t in existing]
        self._old = {id(s) for s in self._keep}
        self._refs: dict[int, weakref.ref] = {}

    def _died(self, key: int, serial: int, size: int) -> None:
        self.events.append((-size, serial))
        self.serial.pop(key, None)
        self._refs.pop(serial, None)

    def key_of(self, tensor: torch.Tensor) -> int | None:
        """The serial of a live recorded tensor's storage (None if it was made before the step)."""
        return self.serial.get(id(tensor.untyped_storage()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self.serial or key in self._old:
                continue
            size = storage.nbytes()
            serial = len(self.names)
            self.serial[key] = serial
            self.names[serial] = f"{func}{tuple(tensor.shape)}"
            self.events.append((size, serial))
            self._refs[serial] = weakref.ref(storage, lambda _r, k=key, n=serial, b=size: self._died(k, n, b))
        return out


def step_peak(model: torch.nn.Module, ids: torch.Tensor) -> int:
    """Activation peak in bytes of one training step of a causal LM on ``ids`` (module docstring)."""
    return _peak(*step_events(model, ids))[0]


def step_events(model: torch.nn.Module, ids: torch.Tensor) -> tuple[LiveStorages, set[int]]:
    """The recorded storages of one step, and the serials of those that became gradients."""
    for p in model.parameters():
        p.grad = None
    model.train()
    existing = [*model.parameters(), *model.buffers(), ids]
    with LiveStorages(existing) as mode:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        del loss
    grads = {mode.key_of(p.grad) for p in model.parameters() if p.grad is not None}
    return mode, grads


def _peak(mode: LiveStorages, grads: set[int]) -> tuple[int, dict[int, int]]:
    """The activation peak, and the storages (serial -> bytes) live at it."""
    live = peak = 0
    alive: dict[int, int] = {}
    best: dict[int, int] = {}
    for size, serial in mode.events:
        if serial in grads:
            continue
        live += size
        if size > 0:
            alive[serial] = size
        else:
            alive.pop(serial, None)
        if live > peak:
            peak, best = live, dict(alive)
    return peak, best


def step_flops(model: torch.nn.Module, ids: torch.Tensor) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) of one step, as torch.utils.flop_counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    # torch counts the CUDA flash kernel but registers no formula for its CPU twin: lend it the CUDA
    # kernel's own (same arguments first: query, key, value; grad_out, query, key, value, out).
    aten = torch.ops.aten

    def raw(cuda):
        def count(*args, **kwargs):
            return flop_registry[cuda](*args, **kwargs)
        count._get_raw = True
        return count

    cpu = {aten._scaled_dot_product_flash_attention_for_cpu: raw(aten._scaled_dot_product_flash_attention),
           aten._scaled_dot_product_flash_attention_for_cpu_backward:
           raw(aten._scaled_dot_product_flash_attention_backward)}
    model.train()
    with FlopCounterMode(display=False, custom_mapping=cpu) as fwd:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    forward = fwd.get_total_flops()
    with FlopCounterMode(display=False, custom_mapping=cpu) as both:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
    return forward, both.get_total_flops()


def _checkpoint(model: torch.nn.Module) -> None:
    """transformers' per-layer activation checkpointing (``gradient_checkpointing_enable``, renamed
    ``activation_checkpointing_enable`` in transformers 5)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def llama(attention: str = "eager", *, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
          ffn: int = 160, vocab: int = 96, checkpoint: bool = False) -> torch.nn.Module:
    """A tiny random Llama (GQA, SwiGLU, RMSNorm, no dropout), fp32 on CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=ffn, vocab_size=vocab,
                         max_position_embeddings=1024, attn_implementation=attention, use_cache=False)
    model = LlamaForCausalLM(config)
    if checkpoint:
        _checkpoint(model)
    return model


def gpt2(attention: str = "eager", *, layers: int = 2, hidden: int = 64, heads: int = 4, vocab: int = 96,
         checkpoint: bool = False) -> torch.nn.Module:
    """A tiny random GPT-2 (4h MLP, exact GELU, LayerNorm, every dropout 0), fp32 on CPU."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=hidden, n_head=heads, vocab_size=vocab, n_positions=1024,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu",
                        attn_implementation=attention, use_cache=False)
    model = GPT2LMHeadModel(config)
    if checkpoint:
        _checkpoint(model)
    return model


def ids(batch: int, seq: int, vocab: int = 96) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
