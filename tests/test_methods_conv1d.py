"""GPT-2 implements its projections as transformers' Conv1D: every method either trains on it or is
ruled out before training with its reason (never a crash in the middle of a grid)."""
from __future__ import annotations

import pytest
import torch

from conftest import CONF, compose
from harness.compat import method_unsupported
from harness.env import pick_device
from harness.models import load_model
from harness.run import run

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
NOT_ON_CONV1D = {"boft", "oft", "loha", "lokr", "olora", "qalora"}


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_on_conv1d_or_is_ruled_out(method):
    cfg = compose([f"method={method}", "model=tiny_gpt2"])
    why = method_unsupported(cfg.method, "decoder", "causal_lm", pick_device("cpu"), cfg.model.layer_type)
    if method in NOT_ON_CONV1D:
        assert why and "Conv1D" in why
        return
    if why:  # ruled out for another reason (LoftQ: CUDA only)
        pytest.skip(why)
    net, tokenizer = load_model(cfg.model, cfg.method, "causal_lm", pick_device("cpu"))
    batch = tokenizer(["public int add(int a, int b) { return a + b; }"], return_tensors="pt")
    net(**batch, labels=batch["input_ids"]).loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(torch.count_nonzero(g) for g in grads)


def test_ruled_out_cell_ends_skipped_with_its_reason(in_tmp):
    result = run(compose(["method=loha", "model=tiny_gpt2", "trainer=smoke", "tracker=none"]), in_tmp / "cell")
    assert result.status == "SKIPPED" and "Conv1D" in result.reason
    assert not (in_tmp / "cell" / "adapter").exists()
