"""`python -m harness.estimate <the overrides of a cell>`: the cell's peak training memory, before the run.

    python -m harness.estimate model=qwen25_coder_0_5b method=qlora device=cuda precision=bf16
    python -m harness.estimate model=tiny_llama model.build.config.hidden_size=4096 ... estimate.seq_len=2048

No weights are loaded and nothing is downloaded beyond a hub model's config.json: the model is built
on the meta device (harness.memory). `device=cuda precision=bf16` plans a GPU run on a CPU machine.
The batch is `trainer.batch_size` sequences of `estimate.seq_len` tokens (default: the longest the
task allows). The last line printed is one JSON object with `peak_bytes` and its parts.

With `distributed=ddp|fsdp|deepspeed_zero2|deepspeed_zero3 estimate.processes=N` it is the peak of
one of N processes: each takes its share of the global batch, and the parts the preset's `shards`
lists (weights, gradients, optimizer state) are split N ways; sharded weights add the blocks that
are gathered whole at a time (two: the one computing and the one prefetched).
"""
from __future__ import annotations

import json
import sys

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from harness import cost
from harness.env import Device
from harness.memory import Estimate, activation_bytes, logits_bytes, repeated_blocks, trace
from harness.models import HEADS, attach_method, base_dtype, with_hub_mirror

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def planned_device(cfg: DictConfig) -> Device:
    """The device a cell would run on; `device=cuda` needs no GPU here (planning)."""
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if kind == "cuda" else "fp32")
    return Device(kind, DTYPES[precision])


def meta_model(cfg: DictConfig, head: str, head_kwargs: dict, vocab_size: int):
    """The cell's model with its method attached, on the meta device, in the trace dtype."""
    import transformers

    if cfg.model.build is not None:
        own = int(cfg.model.build.config.get("vocab_size") or 0)
        config = instantiate(cfg.model.build.config, vocab_size=max(vocab_size, own))
    else:
        config = transformers.AutoConfig.from_pretrained(with_hub_mirror(cfg)[0].model.path)
    for key, value in head_kwargs.items():
        setattr(config, key, value)
    if getattr(config, "pad_token_id", None) is None:  # load_model sets the tokenizer's; memory does not depend on it
        config.pad_token_id = 0
    spec = HEADS[head]
    method = cfg.method.copy()
    method.prepare = None  # quantization preparation needs real quantized weights; counted below
    if method.get("peft") is not None and "init_lora_weights" in method.peft:
        method.peft.init_lora_weights = True  # PiSSA's SVD or OLoRA's QR read weights; shapes are the same
    with torch.device("meta"):
        model = spec.auto_class.from_config(config, attn_implementation="sdpa")
        return attach_method(model, cfg.model, method, spec), config


def quantized_bytes_per_weight(method_cfg: DictConfig) -> float | None:
    """Bytes of one weight of a bitsandbytes-quantized linear layer, its constants included."""
    q = method_cfg.get("quantization")
    if q is None:
        return None
    if q.get("load_in_4bit"):  # 4-bit codes + an absmax per 64 weights (itself 8-bit per 256 blocks)
        return 0.5 + (1 / 64 + 4 / (64 * 256) if q.get("bnb_4bit_use_double_quant") else 4 / 64)
    if q.get("load_in_8bit"):
        return 1.0
    return None


def weight_bytes(model, cfg: DictConfig, head: str, dtype: torch.dtype) -> int:
    """Frozen weights as a cell stores them: quantized linear layers at their packed size."""
    per_weight = quantized_bytes_per_weight(cfg.method)
    skip = [*cfg.model.head_modules, *HEADS[head].unquantized]
    frozen_quantized = 0
    if per_weight is not None:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad \
                    and not any(s in name.split(".") for s in skip):
                frozen_quantized += module.weight.numel()
    other = sum(p.numel() for p in model.parameters() if not p.requires_grad and p.dtype.is_floating_point)
    packed = cost.base_weight_bytes(model) - sum(p.numel() * p.element_size() for p in model.parameters()
                                                 if not p.requires_grad and p.dtype.is_floating_point)
    size = torch.tensor([], dtype=dtype).element_size()
    return int((other - frozen_quantized) * size + frozen_quantized * (per_weight or 0) + packed)


def example_batch(head: str, shape: dict[str, int], batch: int) -> dict[str, torch.Tensor]:
    """Meta tensors of one training batch of the cell's shape (token ids; labels where the head takes
    them from the batch)."""
    ids = lambda n: torch.zeros((batch, n), dtype=torch.long, device="meta")  # noqa: E731
    inputs = {"input_ids": ids(shape["input"])}
    if head == "seq2seq_lm":
        inputs["labels"] = ids(shape.get("target", shape["input"]))
    if head == "sequence_classification":
        inputs["labels"] = torch.zeros((batch,), dtype=torch.long, device="meta")
    if "pair" in shape:
        inputs["pair_input_ids"] = ids(shape["pair"])
    return inputs


def _forward(head: str):
    """The forward pass a cell's loss runs (harness.losses for a causal LM: hidden states only)."""
    def run(model, inputs):
        if head == "causal_lm":
            return model(input_ids=inputs["input_ids"], output_hidden_states=True, logits_to_keep=1)
        if head == "embedding":
            return [model(input_ids=inputs[k]) for k in ("input_ids", "pair_input_ids") if k in inputs]
        return model(**inputs)
    return run


def estimate(cfg: DictConfig) -> Estimate:
    """The peak training memory of the cell `cfg` describes (harness.memory)."""
    device = planned_device(cfg)
    task = instantiate(cfg.task, _convert_="all")
    family, head = cfg.model.family, task.head(cfg.model.family)
    vocab = _vocab_size(cfg)
    model, config = meta_model(cfg, head, task.model_kwargs(), vocab)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weights = weight_bytes(model, cfg, head, base_dtype(cfg.method, device))
    max_length = min(task.max_source_length, cfg.model.max_length)
    shape = task.train_shape(family, max_length)
    if cfg.get("estimate", {}).get("seq_len"):
        shape = {k: int(cfg.estimate.seq_len) for k in shape}
    processes = int(cfg.get("estimate", {}).get("processes") or 1)
    batch = -(-int(cfg.trainer.batch_size) // processes)  # this process's share of the global batch
    model.to(device.dtype)  # autocast computes in this dtype: what the trace saves
    model.train()  # traced without checkpointing: its effect is computed from the layers' parts
    saved = trace(model, example_batch(head, shape, batch), _forward(head))
    activations, largest = activation_bytes(saved, bool(cfg.trainer.get("gradient_checkpointing")),
                                            bool(cfg.trainer.get("compile")))
    tokens = batch * shape.get("target", shape["input"])
    classes = getattr(config, "num_labels", 2) if head == "sequence_classification" else config.vocab_size
    logit_bytes = 0 if head == "embedding" else logits_bytes(
        classes, batch if head == "sequence_classification" else tokens,
        torch.tensor([], dtype=device.dtype).element_size(), head == "causal_lm")
    parts = Estimate(weights=weights, trainable_parameters=4 * trainable, gradients=4 * trainable,
                     optimizer_state=8 * trainable, activations=activations, logits=logit_bytes,
                     backward_transient=largest)
    whole_block = (parts.weights + parts.trainable_parameters) / max(len(repeated_blocks(model)), 1)
    return sharded(parts, cfg, processes, whole_block)


def sharded(parts: Estimate, cfg: DictConfig, processes: int, block_weights: float) -> Estimate:
    """One process's share of the parts its distributed preset shards (`distributed.shards`)."""
    shards = set(cfg.get("distributed", {}).get("shards") or ()) if processes > 1 else set()
    for part in shards:
        setattr(parts, part, -(-getattr(parts, part) // processes))
    if "weights" in shards:
        parts.gathered_weights = int(2 * block_weights)
    return parts


def _vocab_size(cfg: DictConfig) -> int:
    """A built model's vocabulary is its tokenizer's, or its config's when that is larger (as
    harness.models.materialize builds it)."""
    if cfg.model.build is None:
        return 0
    from harness.models import load_tokenizer

    return len(load_tokenizer(cfg.model))


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir

    from harness.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(sys.argv[1:] if argv is None else argv))
    found = estimate(cfg)
    for part, value in found.to_dict().items():
        print(f"{part:>22}: {value / 2**30:8.3f} GiB")
    print(json.dumps(found.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
