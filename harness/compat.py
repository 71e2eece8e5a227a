"""Which method runs on which model family, task head and device: checked before any training.

The rules are data, the `supports:` block of each method YAML:
    supports:
      families: [encoder, decoder]      # only these (absent: all)
      heads: [causal_lm, seq2seq_lm]    # only these (absent: all)
      devices: [cuda]                   # only these (absent: all)
      layer_types: [linear]             # the model YAML's layer_type (absent there: linear)
      reason: why the lists above       # shown in the SKIPPED reason
      excludes:                         # combinations that fail although each part is allowed
        - {families: [seq2seq], heads: [sequence_classification], reason: ...}
"""
from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig

from harness.env import Device

AXES = (("families", "model families"), ("heads", "task heads"), ("devices", "devices"),
        ("layer_types", "layer types"))


def method_unsupported(method: DictConfig, family: str, head: str, device: Device,
                       layer_type: str = "linear") -> str | None:
    """The reason a method cannot run here, or None. layer_type: how the model implements its
    projections (GPT-2's transformers Conv1D stores weights transposed, and some methods refuse it)."""
    rules = method.get("supports") or {}
    where = {"families": family, "heads": head, "devices": device.type, "layer_types": layer_type}
    why = f": {rules.reason}" if rules.get("reason") else ""
    for key, what in AXES:
        allowed = rules.get(key)
        if allowed and where[key] not in allowed:
            return f"method {method.name} supports {what} {list(allowed)}, not {where[key]}{why}"
    for rule in rules.get("excludes") or ():
        if _matches(rule, where):
            return f"method {method.name} does not run with {family} models and {head} heads: {rule.reason}"
    return None


def _matches(rule: Mapping[str, Any], where: Mapping[str, str]) -> bool:
    return all(where[key] in rule[key] for key, _ in AXES if rule.get(key))


def prepare_kbit_training(model, use_gradient_checkpointing: bool = False):
    """peft.prepare_model_for_kbit_training, with the frozen matrices it upcasts put back: PEFT casts
    every non-quantized parameter to fp32, which for Llama 3's embedding and output head adds 2 GB
    that a frozen weight never needs; only the vectors (norm weights, biases) stay fp32, for
    stability, as torchtune keeps them. Plus a bitsandbytes 0.50 CPU workaround: a 4-bit layer
    repacks its weight for AVX512-BF16 inference on its first eval-mode forward and cannot train
    afterwards (an in-place bias add on a graph tensor), so evaluating before training broke QLoRA
    on such CPUs. Turning the repacking off keeps eval and train interchangeable."""
    import peft

    dtypes = {n: p.dtype for n, p in model.named_parameters() if p.dim() > 1 and p.is_floating_point()}
    model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=use_gradient_checkpointing)
    for name, p in model.named_parameters():
        if name in dtypes and not p.requires_grad and p.dtype != dtypes[name]:
            p.data = p.data.to(dtypes[name])
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model
