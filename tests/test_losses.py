"""The causal-LM loss over labelled positions in vocabulary chunks (harness.losses) is the model's own
loss, with the same gradients, for LoRA, prompt tuning (virtual tokens), full fine-tuning and
adapters, with masked prompts, padding and packed blocks."""
from __future__ import annotations

import pytest
import torch

from conftest import compose
from harness.env import pick_device
from harness.losses import causal_lm_loss
from harness.models import load_model


@pytest.mark.parametrize("model,method", [("tiny_llama", "lora"), ("tiny_llama", "prompt"), ("tiny_gpt2", "full"),
                                          ("tiny_llama", "adapter")])
def test_chunked_loss_equals_the_models_loss_and_gradients(model, method):
    cfg = compose([f"model={model}", f"method={method}"])
    net, _ = load_model(cfg.model, cfg.method, "causal_lm", pick_device("cpu"))
    net.eval()  # no dropout: the two passes see the same function
    torch.manual_seed(0)
    ids = torch.randint(10, 4000, (3, 40))
    labels = ids.clone()
    labels[:, :15] = -100                 # the prompt
    labels[2, 30:] = -100                 # padding
    mask = torch.ones_like(ids)
    mask[2, 30:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    grads = []
    for loss_fn in (lambda: net(**batch).loss, lambda: causal_lm_loss(net, batch, chunk=7)):
        net.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((float(loss), [p.grad.clone() for p in net.parameters() if p.requires_grad]))
    (a, ga), (b, gb) = grads
    assert a == pytest.approx(b, abs=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))


def test_chunked_loss_on_packed_blocks_equals_separate_documents():
    """Packed: position ids restart per document and no attention mask: the loss of a block is the
    token-weighted mean of its documents' losses run one by one."""
    from tasks.encoding import pack

    cfg = compose(["model=tiny_llama", "method=full"])
    net, _ = load_model(cfg.model, cfg.method, "causal_lm", pick_device("cpu"))
    net.eval()
    net.config.use_cache = False
    docs = [list(range(5, 17)), list(range(100, 109)), list(range(300, 311))]
    block = pack(docs, 32)[0]
    as_batch = lambda f: {k: torch.tensor([f[k]]) for k in ("input_ids", "labels", "position_ids")}
    with torch.no_grad():
        packed = causal_lm_loss(net, as_batch(block))
        alone = [causal_lm_loss(net, {"input_ids": torch.tensor([d]), "labels": torch.tensor([d])}) for d in docs]
    weights = [len(d) - 1 for d in docs]
    assert float(packed) == pytest.approx(sum(w * float(x) for w, x in zip(weights, alone)) / sum(weights), abs=1e-5)
