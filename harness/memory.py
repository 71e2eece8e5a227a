"""Peak training memory of a cell, estimated before anything is loaded.

The model is built on PyTorch's meta device (shapes, no weights: an 8B model in about a second) with
the method attached as a cell attaches it, and one training forward pass is traced on meta tensors
of the cell's batch shape: every tensor autograd saves for backward is recorded (a
`saved_tensors_hooks`), with the op that made it (a `TorchDispatchMode`) and the layer it belongs to.
From that trace:

- activations: the saved tensors, as eager PyTorch keeps them. Attention is traced as the fused
  kernels (flash, memory-efficient) behave: they keep q, k, v, the output and a log-sum-exp, not the
  (heads x length x length) probabilities the meta device's math kernel would.
  With `trainer.gradient_checkpointing`: each layer keeps only its input, plus one layer's
  activations recomputed at a time in backward. With `trainer.compile`: pointwise results (casts,
  activations, norms' arithmetic) are recomputed in backward, as the compiler's partitioner does, so
  only the outputs of matmuls, attention, embeddings and dropout stay.
- logits: the causal-LM loss (harness.losses) holds one chunk of fp32 logits and its gradient.
- weights: the frozen base in the cell's dtype (bf16 on a GPU, fp32 on the CPU), quantized layers at
  their packed size with their constants (NF4 with double quantization: 4.127 bits a weight).
- trainable parameters, their gradients and AdamW's two states, all fp32.
- a backward transient: the gradients of the largest layer's activations.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.losses import CHUNK

RECOMPUTED = {"_to_copy", "clone", "cat", "expand", "slice", "select", "copy", "lift_fresh", "where", "masked_fill"}


@dataclass
class Estimate:
    weights: int
    trainable_parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    logits: int
    backward_transient: int
    gathered_weights: int = 0   # FSDP / ZeRO-3: the blocks whose shards are gathered whole at a time

    @property
    def peak_bytes(self) -> int:
        return sum(asdict(self).values())

    def to_dict(self) -> dict[str, int]:
        return {"peak_bytes": self.peak_bytes, **asdict(self)}


class _FlashLike(torch.autograd.Function):
    """Scaled-dot-product attention as the fused kernels keep it for backward: q, k, v, output and
    the fp32 log-sum-exp per query."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1], dtype=torch.float32))
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - the trace never runs backward
        raise NotImplementedError


def _fused_sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    return _FlashLike.apply(q, k, v)


class _Producers(TorchDispatchMode):
    """For every tensor an op makes: whether the op is one a compiler recomputes, and its inputs."""

    def __init__(self):
        super().__init__()
        self.made: dict[int, tuple[bool, list[int]]] = {}
        self.keep: list[torch.Tensor] = []  # hold every traced tensor, so that ids stay unique

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        cheap = torch.Tag.pointwise in func.tags or torch.Tag.reduction in func.tags or \
            func.overloadpacket.__name__ in RECOMPUTED
        inputs = [_key(t) for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.keep.append(t)
                self.made.setdefault(_key(t), (cheap, inputs))
        return out


def _key(t: torch.Tensor) -> int:
    return id(t._base if t._base is not None else t)


def _bytes(t: torch.Tensor) -> int:
    base = t._base if t._base is not None else t
    return base.numel() * base.element_size()


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer's layers: the longest ModuleList of modules of one class."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)
             and len({type(c) for c in m}) == 1]
    return list(max(lists, key=len)) if lists else []


@dataclass
class Trace:
    saved: dict[int, tuple[int, int | None]]   # tensor -> (bytes, layer index or None)
    sizes: dict[int, int]                      # every traced tensor -> bytes
    made: dict[int, tuple[bool, list[int]]]
    layer_inputs: list[int]                    # bytes of each layer's input

    def eager(self) -> int:
        return sum(b for b, _ in self.saved.values())

    def per_layer(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for b, layer in self.saved.values():
            if layer is not None:
                out[layer] = out.get(layer, 0) + b
        return out

    def compiled(self) -> int:
        """Bytes kept when pointwise results are recomputed in backward, as a compiler's partitioner
        chooses: for each saved tensor (in forward order), keep it, or instead the tensors it can be
        recomputed from (through pointwise ops only), whichever adds fewer bytes to what is kept."""
        memo: dict[int, set[int]] = {}

        def sources(k: int) -> set[int]:  # the cheapest set (by bytes) that k can be recomputed from
            if k not in memo:
                memo[k] = {k}
                cheap, inputs = self.made.get(k, (False, []))
                inputs = [i for i in inputs if i in self.sizes]
                if cheap and inputs:
                    union = set().union(*(sources(i) for i in inputs))
                    if sum(self.sizes[u] for u in union) <= self.sizes.get(k, 0):
                        memo[k] = union
            return memo[k]

        kept: set[int] = set()
        for k in self.saved:
            options = [{k}, sources(k), set().union(*(sources(i) for i in self._inputs(k))) or {k}]
            kept |= min(options, key=lambda o: sum(self.sizes.get(x, 0) for x in o - kept))
        return sum(self.sizes.get(k, 0) for k in kept)

    def _inputs(self, k: int) -> list[int]:
        cheap, inputs = self.made.get(k, (False, []))
        return [i for i in inputs if i in self.sizes] if cheap else []


def trace(model: torch.nn.Module, inputs: dict, forward) -> Trace:
    """Run `forward(model, inputs)` on meta tensors, recording what autograd saves for backward."""
    frozen = {id(p) for p in model.parameters()} | {id(b) for b in model.buffers()}
    saved: dict[int, tuple[int, int | None]] = {}
    layer: list[int | None] = [None]
    layer_inputs: list[int] = []
    producers = _Producers()

    def pack(t):
        if _key(t) not in frozen and id(t) not in frozen:
            saved.setdefault(_key(t), (_bytes(t), layer[0]))
        return t

    def enter(i):
        def hook(module, args, kwargs):
            layer[0] = i
            hidden = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            layer_inputs.append(_bytes(hidden))
        return hook

    handles = [b.register_forward_pre_hook(enter(i), with_kwargs=True) for i, b in enumerate(repeated_blocks(model))]
    handles += [b.register_forward_hook(lambda *a: layer.__setitem__(0, None)) for b in repeated_blocks(model)]
    try:
        with _patched_attention(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), producers:
            forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    sizes = {_key(t): _bytes(t) for t in producers.keep}
    return Trace(saved, sizes, producers.made, layer_inputs)


@contextlib.contextmanager
def _patched_attention():
    """Fused-kernel attention, and no data-dependent packed-sequence check, while tracing on meta."""
    import transformers.masking_utils as masking

    sdpa, packed = torch.nn.functional.scaled_dot_product_attention, masking.find_packed_sequence_indices
    torch.nn.functional.scaled_dot_product_attention = _fused_sdpa
    masking.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        masking.find_packed_sequence_indices = packed


def activation_bytes(t: Trace, checkpointing: bool, compiled: bool) -> tuple[int, int]:
    """(activations kept at the end of forward, the largest layer's activations)."""
    per_layer = t.per_layer()
    largest = max(per_layer.values(), default=0)
    total = t.compiled() if compiled else t.eager()
    if compiled and per_layer:  # the same recompute rule, scaled to one layer
        largest = int(largest * total / max(t.eager(), 1))
    if not checkpointing or not per_layer:
        return total, largest
    outside = total - sum(per_layer.values()) * (total / max(t.eager(), 1))
    return int(outside + sum(t.layer_inputs) + largest), largest


def logits_bytes(vocab: int, tokens: int, dtype_bytes: int, causal_lm: bool) -> int:
    """The loss's logits at the peak: one chunk for the causal LM (fp32 logits, their gradient and
    the dtype copy); the whole (tokens x classes or vocabulary) otherwise."""
    rows = min(CHUNK, tokens) if causal_lm else tokens
    return rows * vocab * (4 + 4 + dtype_bytes)
