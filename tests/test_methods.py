"""Every method of conf/method/ trains on the CPU with a tiny model on real data: the loss falls,
only the method's parameters change, the trainable count matches the method's formula, and a saved
adapter reloads to the same predictions. Methods that only work with generation heads (prefix
tuning) train a causal LM on real code instead; methods that cannot run here (LoftQ needs CUDA)
are SKIPPED by the compatibility rules before any model is loaded."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF, compose
from harness.compat import method_unsupported
from harness.env import pick_device
from harness.methods.adapter import WithAdapter
from harness.methods.qalora import QALoRALinear
from harness.models import load_model, load_trained
from harness.train import train

CPU = pick_device("cpu")
METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
ROWS, STEPS, MAX_TOKENS = 8, 6, 64


def setting(method_cfg) -> tuple[str, str] | None:
    """(model, head) a method is tested with: classification on tiny_bert where it runs, else
    a causal LM on tiny_llama; None when it cannot run on this machine at all."""
    for model, family, head in (("tiny_bert", "encoder", "sequence_classification"),
                                ("tiny_llama", "decoder", "causal_lm")):
        if method_unsupported(method_cfg, family, head, CPU) is None:
            return model, head
    return None


@lru_cache(maxsize=None)
def real_rows() -> tuple:
    task = instantiate(compose([]).task, _convert_="all")
    return task, tuple(task.load_splits()["train"].select(range(ROWS)))


def features(tokenizer, head: str) -> list[dict]:
    """Real BigCloneBench pairs through the Task class (classification) or their Java code (LM)."""
    task, rows = real_rows()
    if head == "sequence_classification":
        return task.encode(list(rows), tokenizer, "encoder", MAX_TOKENS)
    enc = tokenizer([r["func1"] for r in rows], truncation=True, max_length=MAX_TOKENS)
    return [{"input_ids": i, "attention_mask": m, "labels": list(i)} for i, m in zip(enc["input_ids"], enc["attention_mask"])]


def collator(tokenizer, head: str) -> Callable:
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

    if head == "sequence_classification":
        return DataCollatorWithPadding(tokenizer)
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)


def head_kwargs(head: str) -> dict:
    return {"num_labels": 2} if head == "sequence_classification" else {}


@torch.no_grad()
def evaluate(model, batch: dict) -> tuple[float, torch.Tensor]:
    model.eval()
    out = model(**batch)
    return float(out.loss), out.logits.detach().clone()


def snapshot(model, trainable: bool) -> dict[str, torch.Tensor]:
    """Parameters (and, for the frozen side, buffers such as quantization constants) by name."""
    found = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad == trainable}
    if not trainable:
        found.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return found


@lru_cache(maxsize=None)
def trained(method: str, tmp_root: str) -> dict:
    """Attach the method, train STEPS optimizer steps on one real batch, save the adapter."""
    model_name, head = setting(compose([f"method={method}"]).method)
    cfg = compose([f"method={method}", f"model={model_name}", "trainer=smoke", f"trainer.max_steps={STEPS}",
                   f"trainer.batch_size={ROWS}", "trainer.warmup_ratio=0", "trainer.checkpoint_every=0"])
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, cfg.method, head, CPU, head_kwargs(head))
    feats, collate = features(tokenizer, head), collator(tokenizer, head)
    batch = collate(feats)
    loss_before, _ = evaluate(model, batch)
    frozen, trainable = snapshot(model, False), snapshot(model, True)
    hooks = tuple(instantiate(h) for h in cfg.method.get("step_hooks") or ())
    stats = train(model, feats, collate, cfg.trainer, instantiate(cfg.method.optimizer), CPU, 0, step_hooks=hooks)
    loss_after, logits = evaluate(model, batch)
    out = f"{tmp_root}/{method}"
    model.save_pretrained(out)
    return {"cfg": cfg, "head": head, "model": model, "batch": batch, "stats": stats, "dir": out,
            "loss": (loss_before, loss_after), "logits": logits, "frozen": frozen, "trainable": trainable}


@pytest.fixture
def run_method(request, tmp_path_factory):
    method = request.param
    cfg = compose([f"method={method}"])
    if setting(cfg.method) is None:
        pytest.skip(method_unsupported(cfg.method, "encoder", "sequence_classification", CPU))
    return trained(method, str(tmp_path_factory.getbasetemp() / "adapters"))


def parametrize_methods(fn):
    return pytest.mark.parametrize("run_method", METHODS, indirect=True)(fn)


@parametrize_methods
def test_loss_falls_on_a_real_batch(run_method):
    before, after = run_method["loss"]
    assert math.isfinite(after) and after < before, (before, after)
    assert run_method["stats"].steps == STEPS


@parametrize_methods
def test_only_the_method_parameters_change(run_method):
    model, cfg = run_method["model"], run_method["cfg"]
    now = dict(model.named_parameters())
    changed_frozen = [n for n, v in run_method["frozen"].items()
                      if not n.startswith("buffer:") and not torch.equal(now[n].detach(), v)]
    buffers = dict(model.named_buffers())
    changed_frozen += [n for n, v in run_method["frozen"].items()
                       if n.startswith("buffer:") and not torch.equal(buffers[n[7:]], v)]
    assert not changed_frozen, f"frozen weights changed: {changed_frozen[:5]}"
    heads = set(cfg.model.head_modules)
    method_params = [n for n in run_method["trainable"] if not heads & set(n.split("."))]
    changed = [n for n in method_params if not torch.equal(now[n].detach(), run_method["trainable"][n])]
    assert changed, "no parameter of the method itself changed"


@parametrize_methods
def test_trainable_count_matches_the_method_formula(run_method):
    model = run_method["model"]
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == expected_trainable(run_method["cfg"], model, run_method["head"])


@parametrize_methods
def test_saved_adapter_reloads_to_the_same_predictions(run_method):
    cfg, head = run_method["cfg"], run_method["head"]
    torch.manual_seed(1234)  # a different random init: only the saved weights can restore the outputs
    reloaded, _ = load_trained(cfg.model, cfg.method, head, CPU, run_method["dir"], head_kwargs(head))
    _, logits = evaluate(reloaded, run_method["batch"])
    torch.testing.assert_close(logits, run_method["logits"], rtol=1e-4, atol=1e-5)


# ---- the methods' parameter formulas ------------------------------------------------------------
def _pair(n: int) -> tuple[int, int]:
    """The factor pair (a <= b, a * b = n) with the smallest sum: how LoKr splits a dimension."""
    a = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
    return a, n // a


def _lokr(p: dict, d_in: int, d_out: int) -> int:
    (a, b), (c, d) = _pair(d_out), _pair(d_in)
    second = p["r"] * (b + d) if p["r"] < max(b, d) / 2 else b * d  # W2 low-rank only when that is smaller
    return a * c + second


PER_MATRIX: dict[str, Callable[[dict, int, int], int]] = {  # method params of one adapted (d_in x d_out) matrix
    "LoraConfig": lambda p, i, o: p["r"] * (i + o) + (o if p.get("use_dora") else 0),
    "AdaLoraConfig": lambda p, i, o: p["init_r"] * (i + o) + p["init_r"],  # A, B and the singular values E
    "LoHaConfig": lambda p, i, o: 2 * p["r"] * (i + o),
    "LoKrConfig": _lokr,
    "VeraConfig": lambda p, i, o: p["r"] + o,                   # the scaling vectors d and b
    "OFTConfig": lambda p, i, o: (i // p["oft_block_size"]) * p["oft_block_size"] * (p["oft_block_size"] - 1) // 2,
    "BOFTConfig": lambda p, i, o: p["boft_n_butterfly_factor"] * i * p["boft_block_size"] + o,
    "attach.qalora": lambda p, i, o: p["r"] * (i // p["group_size"] + o),
    "attach.adapter": lambda p, i, o: 2 * o * (o // p["reduction_factor"]) + o // p["reduction_factor"] + o,
}


def _kind(method_cfg) -> str:
    if method_cfg.get("attach") is not None:
        return "attach." + method_cfg.attach._target_.split(".")[-2]
    return method_cfg.peft._target_.split(".")[-1] if method_cfg.get("peft") is not None else "full"


def _adapted(model) -> list[tuple[torch.nn.Module, int, int]]:
    """(layer, d_in, d_out) of every matrix the method adapted."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found = []
    for m in model.modules():
        if isinstance(m, BaseTunerLayer):
            base = m.get_base_layer()
            found.append((m, base.in_features, base.out_features))
        elif isinstance(m, (WithAdapter, QALoRALinear)):
            found.append((m, m.in_features, m.out_features))
    return found


def _prompt_params(kind: str, p: dict, config) -> int:
    n, h = p["num_virtual_tokens"], config.hidden_size
    if kind == "PromptTuningConfig":
        return n * h
    if kind == "PromptEncoderConfig":  # embeddings + MLP h -> e -> e -> h
        e = p["encoder_hidden_size"]
        return n * h + (h * e + e) + (e * e + e) + (e * h + h)
    kv = h // config.num_attention_heads * getattr(config, "num_key_value_heads", config.num_attention_heads)
    return n * config.num_hidden_layers * 2 * kv  # a key and a value prefix per layer


def expected_trainable(cfg, model, head: str) -> int:
    """Head (when the task adds one) + the method's own parameters, by the method's formula."""
    kind = _kind(cfg.method)
    if kind == "full":
        return sum(p.numel() for p in model.parameters())
    p = (cfg.method.attach if kind.startswith("attach.") else cfg.method.peft)
    p = {k: v for k, v in p.items()}
    head_params = 0
    if head == "sequence_classification":
        heads = set(cfg.model.head_modules)
        head_params = sum(x.numel() for n, x in model.named_parameters()
                          if x.requires_grad and heads & set(n.split(".")))
        assert head_params > 0
    if kind in ("PromptTuningConfig", "PromptEncoderConfig", "PrefixTuningConfig"):
        return head_params + _prompt_params(kind, p, model.config)
    if kind == "IA3Config":  # one vector per module: over the input of feed-forward ones, else the output
        return head_params + sum(i if m.is_feedforward else o for m, i, o in _adapted(model))
    adapted = _adapted(model)
    assert adapted, "the method adapted no layer"
    return head_params + sum(PER_MATRIX[kind](p, i, o) for _, i, o in adapted)
