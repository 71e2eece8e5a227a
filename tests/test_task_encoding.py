"""The pieces under the task kinds: prompt masking, left padding, windows, whitespace-token mapping."""
from __future__ import annotations

import torch
from hydra.utils import instantiate

from conftest import compose
from harness.env import pick_device
from harness.models import load_tokenizer
from harness.predict import pad
from tasks.encoding import IGNORE, lm_blocks


def _tok():
    return load_tokenizer(compose(["model=tiny_llama"]).model)


def test_decoder_prompt_is_masked_out_of_the_loss_and_prediction_gets_the_prompt_only():
    task = instantiate(compose(["task=refinement_small"]).task, _convert_="all")
    row = {"id": 0, "buggy": "int f ( ) { return 1 ; }", "fixed": "int f ( ) { return 0 ; }"}
    tok = _tok()
    train = task.encode([row], tok, "decoder", 64)[0]
    target = tok(row["fixed"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert train["labels"][-len(target):] == target
    assert set(train["labels"][:-len(target)]) == {IGNORE}
    prompt = task.encode([row], tok, "decoder", 64, for_training=False)[0]["input_ids"]
    assert train["input_ids"] == prompt + target


def test_left_padding_puts_every_prompt_end_at_the_same_position():
    ids, mask = pad([[5, 6, 7], [8]], 0, "left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_windows_predict_every_position_once():
    ids = list(range(23))
    predicted = [s + 1 + j for s, w in lm_blocks(ids, 8) for j in range(len(w) - 1)]
    assert predicted == list(range(1, 23))


class _Oracle(torch.nn.Module):
    """Predicts the next id from a lookup table (a periodic text makes it a perfect model)."""

    def __init__(self, table: dict[int, int], vocab: int):
        super().__init__()
        self.table, self.vocab = table, vocab

    def forward(self, input_ids, attention_mask=None):
        nxt = torch.tensor([[self.table.get(int(i), 0) for i in row] for row in input_ids])
        return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, self.vocab).float()})


def test_token_completion_maps_subwords_back_to_whitespace_tokens():
    task = instantiate(compose(["task=completion_token_java"]).task, _convert_="all")
    tok = _tok()
    row = {"id": 0, "code": "public static void main ( String args ) { }".split() * 6}
    features = task.encode([row], tok, "decoder", 16, for_training=False)
    ids = features[0]["ids"]
    table = {a: b for a, b in zip(ids, ids[1:])}
    trainer = compose(["trainer=smoke"]).trainer
    perfect = task.predict(_Oracle(table, len(tok)), tok, features, None, trainer, pick_device("cpu"))
    assert perfect == [row["code"]]                      # a consistent table: every token right
    wrong = task.predict(_Oracle({}, len(tok)), tok, features, None, trainer, pick_device("cpu"))
    assert len(wrong[0]) == len(row["code"]) and wrong[0] != row["code"]
    assert task.score([row], perfect)["token_accuracy"] == 100.0


def test_fast_batch_ids_are_the_tokenizers_own_ids():
    """tasks.encoding.token_ids (Rust batch call without offsets) gives exactly tokenizer(...)'s ids:
    pairs truncated longest-first, either truncation side, with and without special tokens."""
    import json

    from tasks import DATA_DIR
    from tasks.encoding import token_ids

    rows = [json.loads(x) for x in (DATA_DIR / "clone_detection_big_clone_bench/pool.jsonl").open()][:40]
    a, b = [r["func1"] for r in rows], [r["func2"] for r in rows]
    for model in ("minilm", "tiny_bert", "tiny_t5"):
        tok = load_tokenizer(compose([f"model={model}"]).model)
        for side in ("right", "left"):
            tok.truncation_side = side
            assert token_ids(tok, a, b, 128) == tok(a, b, truncation=True, max_length=128)["input_ids"]
            assert token_ids(tok, a, max_length=50) == tok(a, truncation=True, max_length=50)["input_ids"]
        tok.truncation_side = "right"
        assert token_ids(tok, a, add_special_tokens=False) == tok(a, add_special_tokens=False)["input_ids"]
