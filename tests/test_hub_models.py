"""The hub model configs (codebert, unixcoder, codet5p_220m, qwen25_coder_0_5b, deepseek_coder_1_3b)
tested without the hub.

`hub_mirror=DIR` loads a hub model from DIR/<owner>/<name>. The session builds such a mirror once:
for each config a tiny random-weight model of its real checkpoint's architecture (RoBERTa, T5,
Qwen2, Llama) with the real checkpoint's wiring (position limits, special tokens and ids, the
tokenizer class AutoTokenizer resolves; tests/tiny_hub_models.py), beside the task datasets the
cells read, as hub repos of real shipped rows. Shown here:

- the stand-ins load as the real checkpoints do (config type, tokenizer class, special tokens);
- each config runs a smoke cell to FINISHED on tasks of its family: classification, retrieval,
  seq2seq generation and classification, decoder generation and classification;
- LoRA attaches to the YAML's `lora_target_modules` (and only a small share of weights trains),
  and a classification head's YAML `head_modules` names the real head, which trains and is saved;
- inputs cut at the YAML's `max_length` fit the encoders' position embeddings;
- bottleneck adapters (`method=adapter`) attach where the YAML's `adapter_modules` point, on an
  encoder and a decoder;
- a hub model missing from the mirror fails the cell, naming the repo and the mirror.
"""
from __future__ import annotations

import json
import re

import pytest
import transformers
from safetensors import safe_open

import tiny_hub_models as tiny
from conftest import compose
from harness.run import run
from tasks import DATA_DIR
from tiny_hub_models import (DEEPSEEK_BOS, DEEPSEEK_EOS, HUB_MODELS, QWEN_EOS, TINY, build_mirror,
                             longest_functions, write_model)

pytestmark = pytest.mark.slow

SMOKE = ["trainer=smoke", "tracker=none"]
SHORT = "task.max_target_length=12"   # generation: a few new tokens keep the cells fast
CLASSIFICATION = {"clone_bcb", "defect"}

CELLS = [   # (model config, task, extra overrides): each head the family trains
    ("codebert", "clone_bcb", []),                 # encoder: pair classification, head `classifier`
    ("codebert", "search_adv", []),                # encoder: embedding / retrieval
    ("unixcoder", "clone_bcb", []),
    ("unixcoder", "search_adv", []),
    ("codet5p_220m", "translation_java_cs", [SHORT]),  # seq2seq generation
    ("codet5p_220m", "defect", []),                # T5 sequence classification, head `classification_head`
    ("qwen25_coder_0_5b", "concode", [SHORT]),     # decoder generation
    ("qwen25_coder_0_5b", "defect", []),           # decoder classification, head `score`
    ("deepseek_coder_1_3b", "concode", [SHORT]),
    ("deepseek_coder_1_3b", "defect", []),
]


@pytest.fixture(scope="session")
def hub_mirror(tmp_path_factory, shared_cache):
    """The hub mirror: every hub config's stand-in and the datasets of the tasks above."""
    return build_mirror(tmp_path_factory.mktemp("hub_mirror"))


def cell(model: str, task: str, mirror, *extra: str):
    """The config of `python -m harness model=M task=T hub_mirror=DIR trainer=smoke tracker=none ...`."""
    return compose([f"model={model}", f"task={task}", f"hub_mirror={mirror}", *SMOKE, *extra])


def saved_weights(adapter_dir) -> list[str]:
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        return list(f.keys())


# ---- the stand-ins ----------------------------------------------------------------------------------
ROBERTA = {"model_type": "roberta", "tokenizer": "RobertaTokenizer", "bos": ("<s>", 0), "eos": ("</s>", 2),
           "pad": ("<pad>", 1), "wraps": ("<s>", "</s>")}
EXPECTED = {   # what the real checkpoint's config and tokenizer say (an id of None: not pinned)
    "codebert": {**ROBERTA, "positions": 514},
    "unixcoder": {**ROBERTA, "positions": 1026},
    "codet5p_220m": {"model_type": "t5", "positions": None, "tokenizer": "RobertaTokenizer", "bos": ("<s>", 1),
                     "eos": ("</s>", 2), "pad": ("<pad>", 0), "wraps": ("<s>", "</s>")},
    "qwen25_coder_0_5b": {"model_type": "qwen2", "positions": 32768, "tokenizer": "Qwen2Tokenizer",
                          "bos": (None, None), "eos": (QWEN_EOS, None), "pad": (QWEN_EOS, None), "wraps": (None, None)},
    # transformers loads DeepSeek-Coder's byte-level tokenizer.json, declared LlamaTokenizerFast, as a
    # TokenizersBackend (the real checkpoint's too): bos before every text, nothing after it
    "deepseek_coder_1_3b": {"model_type": "llama", "positions": 16384, "tokenizer": "TokenizersBackend",
                            "bos": (DEEPSEEK_BOS, None), "eos": (DEEPSEEK_EOS, None), "pad": (DEEPSEEK_EOS, None),
                            "wraps": (DEEPSEEK_BOS, None)},
}


@pytest.mark.parametrize("model", list(EXPECTED))
def test_stand_in_loads_as_the_real_checkpoint_does(model, hub_mirror):
    want = EXPECTED[model]
    cfg = compose([f"model={model}"]).model
    config = transformers.AutoConfig.from_pretrained(hub_mirror / cfg.path)
    tok = transformers.AutoTokenizer.from_pretrained(hub_mirror / cfg.path)
    assert config.model_type == want["model_type"] and type(tok).__name__ == want["tokenizer"]
    assert getattr(config, "max_position_embeddings", None) == want["positions"]
    if want["model_type"] == "roberta":  # positions count from pad_token_id + 1: max_length + 2 must fit
        assert config.pad_token_id == 1 and config.type_vocab_size == 1 and cfg.max_length + 2 <= want["positions"]
    for role in ("bos", "eos", "pad"):
        token, token_id = want[role]
        assert getattr(tok, f"{role}_token") == token, role
        assert token_id is None or getattr(tok, f"{role}_token_id") == token_id, role
    code = "int f(int x) {\n    return x + 1;  // h\u00e9llo\n}"
    ids = tok(code)["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    first, last = want["wraps"]
    assert tokens[0] == first if first else tokens[0] not in tok.all_special_tokens
    assert tokens[-1] == last if last else tokens[-1] not in tok.all_special_tokens
    assert tok.decode(ids, skip_special_tokens=True) == code   # byte-level: code round-trips
    assert len(tok) <= config.vocab_size
    if want["model_type"] == "t5":   # CodeT5+ starts decoding from <pad> and stops at </s>
        assert config.decoder_start_token_id == tok.pad_token_id and config.eos_token_id == tok.eos_token_id


@pytest.mark.parametrize("model", list(HUB_MODELS))
def test_stand_in_is_built_the_same_every_time(model, hub_mirror, tmp_path):
    again = write_model(tmp_path, HUB_MODELS[model])
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (again / name).read_bytes() == (hub_mirror / HUB_MODELS[model].repo / name).read_bytes(), name


# ---- the hub configs through the real pipeline ------------------------------------------------------------
@pytest.mark.parametrize("model,task,extra", CELLS, ids=[f"{m}-{t}" for m, t, _ in CELLS])
def test_hub_config_finishes_a_cell_with_lora_on_its_target_modules(model, task, extra, hub_mirror, in_tmp):
    cfg = cell(model, task, hub_mirror, *extra)
    assert cfg.method.name == "lora"
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.data["source"] == [f"{cfg.task.source.hub}[default]"]   # the mirror's rows, not shipped ones
    assert 0 < result.cost["trainable_share"] < 1, result.cost
    adapter = in_tmp / "cell" / "adapter"
    targets = list(cfg.model.lora_target_modules)
    assert sorted(json.loads((adapter / "adapter_config.json").read_text())["target_modules"]) == sorted(targets)
    keys = saved_weights(adapter)
    for target in targets:
        assert any(f".{target}.lora_A." in k for k in keys), f"no LoRA weights on {target}: {keys[:8]}"
    if task in CLASSIFICATION:   # the YAML's head_modules name the real head: it trains and is saved
        for head in cfg.model.head_modules:
            assert any(f".{head}." in k for k in keys), f"head {head} not saved: {keys[-8:]}"


@pytest.mark.parametrize("model", ["codebert", "unixcoder"])
def test_inputs_cut_at_the_yaml_max_length_fit_the_position_embeddings(model, hub_mirror, in_tmp):
    """The longest Devign functions with no task length cap: every input is cut at the YAML's
    max_length (CodeBERT 512 of 514 positions, UniXcoder 1024 of 1026), and the cell finishes."""
    long = in_tmp / "long"
    long.mkdir()
    rows = longest_functions(8)
    for split, part in (("train", rows[:4]), ("test", rows[4:])):
        (long / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    cfg = cell(model, "defect", hub_mirror, f"task.data_dir={long}", "task.max_source_length=100000",
               "trainer.max_steps=1")
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.cost["train_tokens"] == cfg.trainer.batch_size * cfg.model.max_length   # one step, all cut


@pytest.mark.parametrize("model,task,extra", [("codebert", "clone_bcb", []), ("qwen25_coder_0_5b", "concode", [SHORT])],
                         ids=["encoder-codebert", "decoder-qwen25_coder_0_5b"])
def test_bottleneck_adapters_follow_the_yaml_adapter_modules(model, task, extra, hub_mirror, in_tmp):
    cfg = cell(model, task, hub_mirror, "method=adapter", *extra)
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert 0 < result.cost["trainable_share"] < 1, result.cost
    saved = json.loads((in_tmp / "cell" / "adapter" / "adapter_config.json").read_text())
    assert saved["method"] == "adapter" and saved["modules"] == dict(cfg.model.adapter_modules)
    wrapped = {k.split(".adapter.")[0] for k in saved_weights(in_tmp / "cell" / "adapter") if ".adapter." in k}
    for sublayer, pattern in cfg.model.adapter_modules.items():   # Houlsby: one per layer and sub-layer
        found = [n for n in wrapped if re.search(pattern, n)]
        assert len(found) == TINY["num_hidden_layers"], (sublayer, sorted(wrapped))


@pytest.mark.parametrize("model", list(HUB_MODELS))
def test_a_hub_model_missing_from_the_mirror_fails_naming_repo_and_mirror(model, tmp_path, in_tmp):
    partial = build_mirror(tmp_path / "partial", models=[], tasks=["clone_bcb"])   # the data, no model
    cfg = cell(model, "clone_bcb", partial)
    result = run(cfg, in_tmp / "cell")
    assert result.status == "FAILED"
    assert "not in the mirror" in result.reason, result.reason
    assert cfg.model.path in result.reason and str(partial) in result.reason, result.reason
    assert not (in_tmp / "cell" / "adapter").exists()


@pytest.mark.parametrize("build", [lambda: tiny.roberta_tokenizer(514), tiny.codet5_tokenizer, tiny.qwen2_tokenizer,
                                   tiny.deepseek_tokenizer], ids=["roberta", "codet5", "qwen2", "deepseek"])
def test_fast_batch_ids_equal_each_hub_tokenizers_own(build):
    """tasks.encoding.token_ids (one Rust pass per text, the library's longest-first cut, the
    post-processor's special tokens) gives exactly the ids the tokenizer itself gives."""
    from tasks.encoding import token_ids

    tok = build()
    rows = [json.loads(x) for x in (DATA_DIR / "clone_detection_big_clone_bench/pool.jsonl").open()][:30]
    a, b = [r["func1"] for r in rows], [r["func2"] for r in rows]
    for n in (64, 257):
        assert token_ids(tok, a, b, n) == tok(a, b, truncation=True, max_length=n)["input_ids"]
        assert token_ids(tok, a, max_length=n) == tok(a, truncation=True, max_length=n)["input_ids"]
