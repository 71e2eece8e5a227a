"""The methods PEFT lacks (bottleneck adapters, QA-LoRA) on every model family, method-specific
training settings from config (AdaLoRA's schedule, LoRA+'s learning-rate ratio), the compatibility
rules enforced before training, and the cost of quantized bases."""
from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from harness import cost
from harness.env import pick_device
from harness.methods.adapter import WithAdapter
from harness.methods.qalora import QALoRALinear, _pack, _unpack
from harness.models import load_model, load_trained
from harness.run import run
from harness.train import train
from test_methods import collator, evaluate, features, head_kwargs

CPU = pick_device("cpu")
FAMILIES = [("tiny_bert", "sequence_classification"), ("tiny_llama", "causal_lm"), ("tiny_t5", "seq2seq_lm")]
# adapters per placement: 2 layers; T5 has 2 encoder and 2 decoder layers, its decoder cross-attends
ADAPTERS = {("tiny_bert", "houlsby"): 4, ("tiny_bert", "pfeiffer"): 2, ("tiny_llama", "houlsby"): 4,
            ("tiny_llama", "pfeiffer"): 2, ("tiny_t5", "houlsby"): 2 * 2 + 2 * 3, ("tiny_t5", "pfeiffer"): 4}


def short_training(method: str, model_name: str, head: str, *overrides: str):
    cfg = compose([f"method={method}", f"model={model_name}", "trainer=smoke", "trainer.max_steps=4",
                   "trainer.batch_size=8", "trainer.warmup_ratio=0", "trainer.checkpoint_every=0", *overrides])
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, cfg.method, head, CPU, head_kwargs(head))
    feats, collate = features(tokenizer, head), collator(tokenizer, head)
    if head == "seq2seq_lm":  # code in, the same code out: enough for a loss that can fall
        feats = [{**f, "labels": f["input_ids"]} for f in feats]
    batch = collate(feats)
    hooks = tuple(instantiate(h) for h in cfg.method.get("step_hooks") or ())
    before = evaluate(model, batch)[0]
    train(model, feats, collate, cfg.trainer, instantiate(cfg.method.optimizer), CPU, 0, step_hooks=hooks)
    return cfg, model, batch, before


@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
@pytest.mark.parametrize("model_name,head", FAMILIES)
def test_adapters_on_every_family_start_as_identity_train_and_reload(model_name, head, placement, tmp_path):
    overrides = [f"method.attach.placement={placement}"]
    cfg = compose(["method=adapter", f"model={model_name}", *overrides])
    plain, tokenizer = load_model(cfg.model, compose(["method=full"]).method, head, CPU, head_kwargs(head))
    torch.manual_seed(0)
    fresh, _ = load_model(cfg.model, cfg.method, head, CPU, head_kwargs(head))
    batch = collator(tokenizer, head)([{**f, "labels": f["input_ids"]} if head == "seq2seq_lm" else f
                                       for f in features(tokenizer, head)])
    if head != "sequence_classification":  # a new head differs anyway; the body must not
        torch.testing.assert_close(evaluate(fresh, batch)[1], evaluate(plain, batch)[1])
    assert sum(isinstance(m, WithAdapter) for m in fresh.modules()) == ADAPTERS[model_name, placement]

    cfg, model, batch, before = short_training("adapter", model_name, head, *overrides)
    loss, logits = evaluate(model, batch)
    assert loss < before
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["placement"] == placement
    reloaded, _ = load_trained(cfg.model, cfg.method, head, CPU, tmp_path, head_kwargs(head))
    torch.testing.assert_close(evaluate(reloaded, batch)[1], logits, rtol=1e-4, atol=1e-5)


def test_adapter_pfeiffer_config_is_the_adapter_with_its_placement():
    assert compose(["method=adapter_pfeiffer"]).method.attach == compose(
        ["method=adapter", "method.attach.placement=pfeiffer"]).method.attach


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_qalora_packing_round_trips(bits):
    codes = torch.randint(0, 2 ** bits, (7, 24), dtype=torch.uint8)
    packed = _pack(codes, bits)
    assert packed.numel() == -(-codes.numel() * bits // 8)
    assert torch.equal(_unpack(packed, bits, codes.numel()).view(7, 24), codes)


def test_qalora_quantizes_within_half_a_step_per_group():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 16)
    layer = QALoRALinear(linear, bits=4, group_size=32, r=4, alpha=8, dropout=0.0)
    error = (layer.dequantized_weight() - linear.weight).abs().view(16, 2, 32)
    assert (error <= layer.scale.unsqueeze(-1) / 2 + 1e-6).all()
    assert layer.qweight.dtype == torch.uint8 and layer.qweight.numel() == 64 * 16 // 2


@pytest.mark.parametrize("model_name,head", FAMILIES)
def test_qalora_merge_keeps_the_model_quantized_and_the_outputs(model_name, head):
    cfg, model, batch, _ = short_training("qalora", model_name, head)
    layers = [m for m in model.modules() if isinstance(m, QALoRALinear)]
    assert layers and all(m.lora_B.weight.abs().sum() > 0 for m in layers)  # training moved the branch
    codes = [m.qweight.detach().clone() for m in layers]
    offsets = [m.offset.clone() for m in layers]
    _, logits = evaluate(model, batch)
    merged = model.merge_and_unload()
    _, merged_logits = evaluate(merged, batch)
    torch.testing.assert_close(merged_logits, logits, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(m.qweight, c) and m.qweight.dtype == torch.uint8 for m, c in zip(layers, codes))
    assert all(not torch.equal(m.offset, o) for m, o in zip(layers, offsets))  # folded into the zero-points
    assert not any("lora_" in n for n, _ in merged.named_parameters())


def test_adalora_schedule_from_config_is_rescaled_and_reallocates_ranks():
    cfg, model, _, _ = short_training("adalora", "tiny_bert", "sequence_classification",
                                      "trainer.max_steps=10")
    config = model.peft_config["default"]
    assert config.total_step == 10 and (config.tinit, config.tfinal) == (1, 2)
    assert config.rank_pattern  # the budget was reallocated during training
    kept = sum(int(sum(mask)) for mask in config.rank_pattern.values())
    assert kept <= cfg.method.peft.target_r * len(config.rank_pattern)


def test_loraplus_gives_b_matrices_the_configured_lr_ratio():
    cfg = compose(["method=loraplus", "model=tiny_bert"])
    model, _ = load_model(cfg.model, cfg.method, "sequence_classification", CPU, {"num_labels": 2})
    optimizer = instantiate(cfg.method.optimizer)(model)
    slow, fast = optimizer.param_groups
    assert fast["lr"] == slow["lr"] * cfg.method.optimizer.lr_ratio == 1e-3 * 16
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".lora_B." in names[id(p)] for p in fast["params"])
    assert len(slow["params"]) + len(fast["params"]) == sum(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method,expected", [
    ("loftq", "supports devices ['cuda'], not cpu"),
    ("prefix", "does not run with encoder models and sequence_classification heads"),
])
def test_unsupported_combination_is_skipped_before_training(method, expected, in_tmp):
    cfg = compose([f"method={method}", "model=tiny_bert", "trainer=smoke", "tracker=none"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "SKIPPED" and expected in result.reason, result.reason
    assert not (in_tmp / "cell" / "adapter").exists()


@pytest.mark.parametrize("method", ["qlora", "qalora", "adapter"])
def test_cell_with_method_records_its_cost(method, in_tmp):
    cfg = compose([f"method={method}", "model=tiny_bert", "trainer=smoke", "tracker=none"])
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    record = json.loads((in_tmp / "cell" / "result.json").read_text())["cost"]
    plain, _ = load_model(cfg.model, compose(["method=full"]).method, "sequence_classification", CPU,
                          {"num_labels": 2})
    assert record["total_params"] - record["trainable_params"] <= sum(p.numel() for p in plain.parameters())
    assert 0 < record["trainable_share"] < 0.05
    assert 0 < record["adapter_bytes"] < cost.parameter_counts(plain)["weight_bytes"] / 10
    assert record["base_weight_bytes"] < cost.parameter_counts(plain)["weight_bytes"]
    assert record["tokens_per_second"] > 0 and record["peak_memory_bytes"] > 0


def test_quantized_base_counts_logical_weights_and_packed_bytes():
    lora, qlora, qalora = (load_model(compose([f"method={m}", "model=tiny_bert"]).model,
                                      compose([f"method={m}", "model=tiny_bert"]).method,
                                      "sequence_classification", CPU, {"num_labels": 2})[0]
                           for m in ("lora", "qlora", "qalora"))
    lora_cost, qlora_cost = cost.parameter_counts(lora), cost.parameter_counts(qlora)
    assert qlora_cost["total_params"] == lora_cost["total_params"]  # 4-bit weights counted unpacked
    assert cost.base_weight_bytes(qlora) < cost.base_weight_bytes(lora)
    # QA-LoRA's packed uint8 codes count as their logical weights too. (The new head trains in place
    # under QA-LoRA; under PEFT a trainable copy of it trains and the original stays frozen.)
    frozen = lambda m: cost.parameter_counts(m)["total_params"] - cost.parameter_counts(m)["trainable_params"]
    head = sum(p.numel() for n, p in qalora.named_parameters() if p.requires_grad and "classifier" in n)
    assert frozen(qalora) + head == frozen(lora)
