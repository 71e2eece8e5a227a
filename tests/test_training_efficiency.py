"""No compute on padding, generation that stops when the answer is complete, per-cell memory, and
progress on the console: batches grouped by length (every example once, seeded, resumable),
causal-LM corpora packed with attention kept per document, stop strings honoured by generation."""
from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from harness.batching import batch_tokens, epoch_batches, feature_lengths
from harness.cost import PeakMemory
from harness.env import pick_device
from harness.features import build_features
from harness.models import load_model, load_tokenizer
from harness.run import run
from harness.train import train
from tasks.encoding import IGNORE, PadCollator, pack

CPU = pick_device("cpu")


def test_grouped_batches_hold_every_example_once_and_are_seeded():
    lengths = [int(x) for x in torch.randint(5, 500, (1003,), generator=torch.Generator().manual_seed(1))]
    first = epoch_batches(lengths, 16, seed=3, epoch=0)
    assert sorted(i for b in first for i in b) == list(range(1003))
    assert first == epoch_batches(lengths, 16, seed=3, epoch=0)
    assert first != epoch_batches(lengths, 16, seed=3, epoch=1) and first != epoch_batches(lengths, 16, seed=4, epoch=0)
    assert epoch_batches(lengths, 16, seed=3, epoch=1) != epoch_batches(lengths, 16, seed=4, epoch=0)
    assert max(lengths[i] for i in first[0]) == max(lengths)   # the longest batch first
    plain = epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=False)
    assert sorted(i for b in plain for i in b) == list(range(1003)) and plain != first


def _padding(task: str, group: bool) -> float:
    cfg = compose([f"task={task}", "model=tiny_llama"])
    t = instantiate(cfg.task, _convert_="all")
    data = t.load_data(t.data_plan())
    features = build_features(t, data.splits["train"], data.plan.identity, load_tokenizer(cfg.model), "decoder",
                              min(t.max_source_length, cfg.model.max_length), label="train")
    lengths, pairs = feature_lengths(features)
    real = positions = 0
    for batch in epoch_batches(lengths, 16, 0, 0, group):
        r, p = batch_tokens(batch, lengths, pairs)
        real, positions = real + r, positions + p
    return 1 - real / positions


@pytest.mark.parametrize("task", ["translation_java_cs", "summarize_ruby"])
def test_length_grouping_cuts_padding_to_under_five_percent_at_batch_16(task):
    assert _padding(task, group=True) <= 0.05
    assert _padding(task, group=False) >= 0.40   # what random order costs (68% and 50% measured)


class _Recorder:
    """A collate that records which examples each batch holds."""

    def __init__(self, pad_id: int):
        self.inner, self.seen = PadCollator(pad_id), []

    def __call__(self, features):
        self.seen.append(sorted(int(f["input_ids"][0]) for f in features))
        return self.inner(features)


def test_a_resumed_run_trains_the_batches_an_uninterrupted_run_would(tmp_path):
    cfg = compose(["model=tiny_llama", "method=lora", "trainer=smoke", "trainer.max_steps=6",
                   "trainer.batch_size=4", "trainer.checkpoint_every=3", "trainer.log_every=3"])
    features = [{"input_ids": [i, *range(10, 10 + 3 + i % 7)], "labels": [i, *range(10, 10 + 3 + i % 7)]}
                for i in range(40)]

    def fresh():
        model, tok = load_model(cfg.model, cfg.method, "causal_lm", CPU)
        return model, _Recorder(tok.pad_token_id)

    model, whole = fresh()
    train(model, features, whole, cfg.trainer, instantiate(cfg.method.optimizer), CPU, seed=5)
    ckpt = tmp_path / "ckpt"
    model, first = fresh()
    short = compose(["model=tiny_llama", "method=lora", "trainer=smoke", "trainer.max_steps=3",
                     "trainer.batch_size=4", "trainer.checkpoint_every=3"]).trainer
    train(model, features, first, short, instantiate(cfg.method.optimizer), CPU, seed=5, checkpoint_dir=ckpt)
    model, second = fresh()
    stats = train(model, features, second, cfg.trainer, instantiate(cfg.method.optimizer), CPU, seed=5,
                  checkpoint_dir=ckpt)
    assert stats.resumed_from_step == 3 and first.seen + second.seen == whole.seen


def test_packing_fills_blocks_and_keeps_document_boundaries():
    docs = [list(range(100, 100 + n)) for n in (5, 9, 3, 14, 2)]
    blocks = pack(docs, 8)
    assert all(len(b["input_ids"]) == 8 for b in blocks[:-1]) and len(blocks[-1]["input_ids"]) <= 8
    flat = [t for b in blocks for t in b["input_ids"]]
    assert flat == [t for d in docs for t in d][: len(flat)] and len(flat) >= sum(map(len, docs)) - 1
    for b in blocks:   # a position 0 starts a document (or a piece of one): never a prediction target
        assert all((p == 0) == (y == IGNORE) for p, y in zip(b["position_ids"], b["labels"]))
    batch = PadCollator(0)(blocks[-2:])
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape


def test_a_cell_reports_padding_and_prediction_throughput(in_tmp):
    result = run(compose(["task=translation_java_cs", "model=tiny_llama", "trainer=smoke", "tracker=none",
                          "task.max_target_length=8", "trainer.batch_size=8", "trainer.max_train_examples=64"]),
                 in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    record = json.loads((in_tmp / "cell" / "result.json").read_text())["cost"]
    assert 0 <= record["padding_share"] < 0.5
    assert record["predict_tokens_per_second"] > 0 and record["predict_generated_tokens"] > 0
    assert record["estimated_peak_memory_bytes"] > 0


def test_generation_stops_at_the_stop_string():
    """A decoder that always emits `<`: with the stop string `<<` it stops after two tokens, not at
    max_new_tokens (transformers' stop-string criterion through harness.predict.generate)."""
    from harness.predict import generate

    cfg = compose(["model=tiny_llama", "method=full"])
    model, tok = load_model(cfg.model, cfg.method, "causal_lm", CPU)
    lt = tok("<", add_special_tokens=False)["input_ids"][0]

    def always_lt(module, inputs, logits):
        forced = torch.full_like(logits, -1e4)
        forced[..., lt] = 1e4
        return forced

    model.lm_head.register_forward_hook(always_lt)
    prompts = [[tok.bos_token_id, 50, 60], [tok.bos_token_id, 70]]
    unbounded = generate(model, prompts, tok.pad_token_id, 8, CPU, True, max_new_tokens=20, do_sample=False)
    stopped = generate(model, prompts, tok.pad_token_id, 8, CPU, True, max_new_tokens=20, do_sample=False,
                       stop_strings=["<<"], tokenizer=tok)
    assert all(len([t for t in s if t != tok.pad_token_id]) == 20 for s in unbounded)
    assert all(len([t for t in s if t != tok.pad_token_id]) == 2 for s in stopped)


def test_peak_memory_is_the_cells_own_not_the_process_peak():
    with PeakMemory("cpu") as big:
        block = torch.ones(64, 2**20)  # 256 MiB
        del block
    with PeakMemory("cpu") as small:
        torch.ones(1024)
    assert big.bytes >= 200 * 2**20 and small.bytes < 50 * 2**20


def test_training_prints_progress_whatever_the_tracker(in_tmp, capsys):
    run(compose(["model=tiny_bert", "trainer=smoke", "tracker=none"]), in_tmp / "cell")
    out = capsys.readouterr()
    assert "[harness] step 3/3  loss " in out.out and "tokens/s" in out.out and "s left" in out.out
    assert "[harness] predict" in out.err


@pytest.mark.parametrize("extra", [["trainer.gradient_checkpointing=true"], ["precision=fp16"],
                                   ["model.attn_implementation=eager"], ["trainer.group_by_length=false"],
                                   ["trainer.data_workers=2"], ["trainer.generation_cache=dynamic"]],
                         ids=["checkpointing", "fp16-loss-scaling", "eager-attention", "random-order", "workers",
                              "dynamic-cache"])
def test_memory_and_speed_options_train_a_cell(extra, in_tmp):
    result = run(compose(["model=tiny_llama", "task=concode", "trainer=smoke", "tracker=none", "task.max_target_length=8",
                          *extra]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.cost["train_steps"] == 3 and result.cost["train_tokens"] > 0


@pytest.mark.slow
def test_compile_trains_a_cell(in_tmp):
    result = run(compose(["model=tiny_llama", "task=code_corpus", "trainer=smoke", "tracker=none", "trainer.compile=true",
                          "task.include=[json/*.py]", "task.lines_per_file=1", "task.max_target_length=4"]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason


def test_the_prepared_gpu_check_runs_on_the_cpu(tmp_path):
    """bench/gpu_check.py --smoke: the GPU check's own code on a tiny shape, so it is ready when a GPU is."""
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env

    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(tmp_path),
                           "--methods", "lora,qlora"], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["FINISHED", "FINISHED"]
    assert all(r["tokens_per_second"] > 0 and r["estimated_peak_memory_bytes"] > 0 for r in report["rows"])
