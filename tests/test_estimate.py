"""`python -m harness.estimate`: the memory estimate's parts against the real model's, its total
against a cell's measured peak, and the published figures it must reproduce (torchtune's table for
Llama 3.1 8B; QLoRA of a 7B model on an 8 GB card)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, compose, subprocess_env
from harness.env import pick_device
from harness.estimate import _forward, _vocab_size, estimate, example_batch, meta_model
from harness.memory import trace
from harness.models import load_model

CPU = pick_device("cpu")
MEDIUM = ["model=tiny_llama", "task=code_corpus", "model.max_length=256", "trainer.batch_size=8",
          "model.build.config.hidden_size=512", "model.build.config.intermediate_size=1536",
          "model.build.config.num_hidden_layers=6", "model.build.config.num_attention_heads=8",
          "model.build.config.num_key_value_heads=8"]
LLAMA31_8B = ["model=tiny_llama", "model.build.config.hidden_size=4096", "model.build.config.intermediate_size=14336",
              "model.build.config.num_hidden_layers=32", "model.build.config.num_attention_heads=32",
              "model.build.config.num_key_value_heads=8", "+model.build.config.vocab_size=128256",
              "model.build.config.max_position_embeddings=131072", "+model.build.config.rope_theta=500000",
              "model.max_length=2048", "task=code_corpus", "trainer.batch_size=2", "estimate.seq_len=2048",
              "device=cuda", "precision=bf16", "method.peft.lora_dropout=0.0"]
TORCHTUNE_LORA = "model.lora_target_modules=[q_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
TORCHTUNE_QLORA = "model.lora_target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"
GIB = 2**30


@pytest.mark.parametrize("method", ["lora", "full", "adapter"])
def test_traced_activations_equal_what_autograd_saves_on_real_tensors(method):
    """The meta-device trace sees exactly the saved tensors a real forward pass saves."""
    cfg = compose([*MEDIUM, f"method={method}", "model.build.config.num_hidden_layers=2"])
    real, _ = load_model(cfg.model, cfg.method, "causal_lm", CPU)
    real.train()
    real.config.use_cache = False
    ids = torch.randint(10, 4000, (8, 256))
    measured = trace(real, {"input_ids": ids}, _forward("causal_lm")).eager()
    meta, _ = meta_model(cfg, "causal_lm", {}, _vocab_size(cfg))
    meta.train()
    estimated = trace(meta, example_batch("causal_lm", {"input": 256}, 8), _forward("causal_lm")).eager()
    assert estimated == measured > 0


@pytest.mark.parametrize("method", ["lora", "full", "qlora", "qalora"])
def test_weights_and_trainable_parameters_match_the_loaded_model(method):
    from harness import cost

    cfg = compose([*MEDIUM, f"method={method}", "model.build.config.num_hidden_layers=2"])
    real, _ = load_model(cfg.model, cfg.method, "causal_lm", CPU)
    found = estimate(cfg)
    trainable = sum(p.numel() for p in real.parameters() if p.requires_grad)
    assert found.trainable_parameters == found.gradients == 4 * trainable
    assert found.optimizer_state == 8 * trainable
    assert found.weights == pytest.approx(cost.base_weight_bytes(real), rel=0.02)


def _cell_peak(out_dir, *overrides: str) -> dict:
    """A cell in a fresh process with glibc told to hand freed memory back at once, so that its
    resident size follows live memory (glibc otherwise keeps what was freed)."""
    code = ("import json, pathlib, sys; sys.path.insert(0, 'tests'); from conftest import compose; "
            "from harness.run import run; r = run(compose(sys.argv[2:]), pathlib.Path(sys.argv[1])); "
            "print(json.dumps(r.cost))")
    env = {**subprocess_env(), "MALLOC_ARENA_MAX": "1", "MALLOC_TRIM_THRESHOLD_": "0"}
    args = [*MEDIUM, *overrides, "tracker=none", "trainer=smoke", "trainer.max_steps=3", "trainer.batch_size=8",
            "trainer.max_train_examples=64", "trainer.max_eval_examples=8", "task.max_target_length=4",
            "task.lines_per_file=1"]
    proc = subprocess.run([sys.executable, "-c", code, str(out_dir), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["method=lora"], ["method=lora", "trainer.gradient_checkpointing=true"],
                                       ["method=full"]], ids=["lora", "lora-checkpointing", "full"])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(overrides, tmp_path):
    cost = _cell_peak(tmp_path / "cell", *overrides)
    assert cost["estimated_peak_memory_bytes"] == pytest.approx(cost["peak_memory_bytes"], rel=0.25)


@pytest.mark.parametrize("overrides,published_gib", [
    (["method=lora", TORCHTUNE_LORA, "trainer.gradient_checkpointing=true", "trainer.compile=true"], 16.2),
    (["method=lora", TORCHTUNE_LORA, "trainer.compile=true"], 30.3),
    (["method=qlora", TORCHTUNE_QLORA, "trainer.gradient_checkpointing=true", "trainer.compile=true"], 7.4),
], ids=["lora-checkpointing-4090", "lora-a6000", "qlora-4090"])
def test_torchtunes_published_llama31_8b_figures_are_reproduced(overrides, published_gib):
    """torchtune's README: Llama 3.1 8B, batch 2, packed to 2,048 tokens, bf16, torch.compile."""
    found = estimate(compose([*LLAMA31_8B, *overrides])).peak_bytes / GIB
    assert found == pytest.approx(published_gib, rel=0.30)


def test_a_7b_model_fine_tunes_with_qlora_on_an_8gb_card():
    llama2_7b = ["model=tiny_llama", "model.build.config.hidden_size=4096", "model.build.config.intermediate_size=11008",
                 "model.build.config.num_hidden_layers=32", "model.build.config.num_attention_heads=32",
                 "model.build.config.num_key_value_heads=32", "+model.build.config.vocab_size=32000",
                 "model.max_length=512", "task=code_corpus", "trainer.batch_size=1", "estimate.seq_len=512",
                 "device=cuda", "precision=bf16", "method=qlora"]
    assert estimate(compose(llama2_7b)).peak_bytes < 7.5 * GIB   # room for the CUDA context on 8 GB


def test_the_cli_plans_a_gpu_run_on_a_cpu_and_prints_json_last():
    proc = subprocess.run([sys.executable, "-m", "harness.estimate", "model=tiny_llama", "task=concode",
                           "method=qlora", "device=cuda", "precision=bf16"], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    parts = ("weights", "trainable_parameters", "gradients", "optimizer_state", "activations", "logits")
    assert all(found[p] >= 0 for p in parts) and found["peak_bytes"] >= sum(found[p] for p in parts)
