"""Tiny, random-weight stand-ins for the hub checkpoints the model configs name, written into a hub
mirror (DIR/<owner>/<name>, as `hf download REPO --local-dir` lays a repo out), so the hub model
configs run offline.

Each stand-in has its real checkpoint's architecture and the properties the harness wires to:
the saved model class and config type (what AutoConfig and the Auto* heads read), the position
limits the YAML's max_length must fit, the special tokens and their ids, what the tokenizer adds
around a text, and the tokenizer class `AutoTokenizer` resolves. Everything else is shrunk (hidden
size 32, 2 layers) so a smoke cell runs in seconds on a CPU. The vocabulary is the project's offline
byte-level BPE (harness.tokenizer.byte_bpe) with its special tokens moved to the ids the real
vocabularies give them.

Also here: the task datasets those cells read, as hub repos under the same mirror (a mirror holds
datasets and models alike, and a repo missing from it is an error, never a fall-back).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import transformers
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

from harness.tokenizer import byte_bpe, task_yaml
from hubfix import write_repo
from tasks import DATA_DIR

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
SEED = 0

# DeepSeek-Coder's sentence markers (fullwidth bars, U+2581 for the space)
DEEPSEEK_BOS, DEEPSEEK_EOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"
QWEN_EOS = "<|endoftext|>"


def byte_level_backend(head: Sequence[str] = (), tail: Sequence[str] = ()) -> Tokenizer:
    """The project's byte-level BPE with its own special tokens replaced: `head` at ids 0, 1, ...
    (RoBERTa and CodeT5 put theirs first), the learned vocabulary after them, `tail` after that
    (Qwen and DeepSeek append theirs). No post-processor: each tokenizer class adds its own."""
    base = json.loads(byte_bpe(vocab_size=4096).backend_tokenizer.to_str())
    specials = {t["content"] for t in base["added_tokens"]}
    learned = [tok for tok, _ in sorted(base["model"]["vocab"].items(), key=lambda kv: kv[1]) if tok not in specials]
    vocab = {tok: i for i, tok in enumerate([*head, *learned, *tail])}
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in base["model"]["merges"]]
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([*head, *tail])
    return backend


def roberta_tokenizer(model_max_length: int):
    """CodeBERT / UniXcoder: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask> last; `<s> text </s>`,
    pairs `<s> a </s></s> b </s>`."""
    return transformers.RobertaTokenizerFast(tokenizer_object=byte_level_backend(["<s>", "<pad>", "</s>", "<unk>"],
                                                                                 ["<mask>"]),
                                             model_max_length=model_max_length)


def codet5_tokenizer():
    """CodeT5+: a RoBERTa-style BPE with <pad>=0 <s>=1 </s>=2 <unk>=3 <mask>=4, `<s> text </s>`."""
    return transformers.RobertaTokenizerFast(
        tokenizer_object=byte_level_backend(["<pad>", "<s>", "</s>", "<unk>", "<mask>"]), model_max_length=512)


def qwen2_tokenizer():
    """Qwen2.5 (base): no bos token, nothing added around a text, <|endoftext|> is eos and pad."""
    return transformers.Qwen2TokenizerFast(
        tokenizer_object=byte_level_backend(tail=[QWEN_EOS, "<|im_start|>", "<|im_end|>"]),
        bos_token=None, eos_token=QWEN_EOS, pad_token=QWEN_EOS, unk_token=None, model_max_length=32768)


def deepseek_tokenizer():
    """DeepSeek-Coder: a byte-level BPE declared as LlamaTokenizerFast; bos added before every
    text, no eos after it, eos doubles as pad."""
    return transformers.LlamaTokenizerFast(
        tokenizer_object=byte_level_backend(tail=[DEEPSEEK_BOS, DEEPSEEK_EOS]), bos_token=DEEPSEEK_BOS,
        eos_token=DEEPSEEK_EOS, pad_token=DEEPSEEK_EOS, unk_token=None, add_bos_token=True, add_eos_token=False,
        legacy=True, model_max_length=16384)


def padded(n: int, multiple: int = 64) -> int:
    """Embedding rows rounded up, as Qwen (151,936 for 151,665 tokens) and DeepSeek-Coder pad theirs."""
    return -(-n // multiple) * multiple


def roberta(tok, max_positions: int) -> transformers.PreTrainedModel:
    config = transformers.RobertaConfig(**TINY, vocab_size=len(tok), max_position_embeddings=max_positions,
                                        type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=tok.pad_token_id,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return transformers.RobertaModel(config)  # as the hub checkpoints are saved: no head, pooler included


def t5(tok) -> transformers.PreTrainedModel:
    config = transformers.T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_decoder_layers=2, num_heads=4, feed_forward_proj="relu",
                                   pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    return transformers.T5ForConditionalGeneration(config)


def qwen2(tok) -> transformers.PreTrainedModel:
    eos = tok.eos_token_id
    config = transformers.Qwen2Config(**TINY, num_key_value_heads=2, vocab_size=padded(len(tok)),
                                      max_position_embeddings=32768, tie_word_embeddings=True,
                                      bos_token_id=eos, eos_token_id=eos)
    return transformers.Qwen2ForCausalLM(config)


def llama(tok) -> transformers.PreTrainedModel:
    config = transformers.LlamaConfig(**TINY, num_key_value_heads=4, vocab_size=padded(len(tok)),
                                      max_position_embeddings=16384, tie_word_embeddings=False,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return transformers.LlamaForCausalLM(config)


@dataclass(frozen=True)
class HubModel:
    repo: str                        # the model YAML's `path`
    tokenizer: Callable[[], object]
    model: Callable[[object], transformers.PreTrainedModel]
    tokenizer_class: str             # what tokenizer_config.json declares, as on the hub


HUB_MODELS: dict[str, HubModel] = {   # model config name -> its stand-in
    "codebert": HubModel("microsoft/codebert-base", lambda: roberta_tokenizer(512),
                         lambda tok: roberta(tok, 514), "RobertaTokenizer"),
    "unixcoder": HubModel("microsoft/unixcoder-base", lambda: roberta_tokenizer(1024),
                          lambda tok: roberta(tok, 1026), "RobertaTokenizer"),
    "codet5p_220m": HubModel("Salesforce/codet5p-220m", codet5_tokenizer, t5, "RobertaTokenizer"),
    "qwen25_coder_0_5b": HubModel("Qwen/Qwen2.5-Coder-0.5B", qwen2_tokenizer, qwen2, "Qwen2Tokenizer"),
    "deepseek_coder_1_3b": HubModel("deepseek-ai/deepseek-coder-1.3b-base", deepseek_tokenizer, llama,
                                    "LlamaTokenizerFast"),
}


def write_model(root: Path, spec: HubModel) -> Path:
    """The stand-in saved at root/<owner>/<name>, weights seeded: the same files every session."""
    path = root / spec.repo
    tok = spec.tokenizer()
    torch.manual_seed(SEED)
    spec.model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    config_file = path / "tokenizer_config.json"  # declare the class the hub repo declares
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "tokenizer_class": spec.tokenizer_class},
                                      indent=2, ensure_ascii=False))
    return path


# ---- the task datasets, as hub repos --------------------------------------------------------------
def _shipped(rel: str) -> list[dict]:
    return [json.loads(line) for line in (DATA_DIR / rel).read_text(encoding="utf-8").splitlines()]


def task_splits() -> dict[str, dict[str, list[dict]]]:
    """Real shipped rows in each task's hub splits, a few more than a smoke cell reads (16 train and
    16 test rows)."""
    bcb = _shipped("clone_detection_big_clone_bench/pool.jsonl")
    devign = _shipped("defect_detection/pool.jsonl")
    advtest = {s: _shipped(f"nl_code_search_adv/{s}.jsonl") for s in ("train", "test")}
    trans = {s: _shipped(f"code_to_code_trans/{s}.jsonl")[:20] for s in ("train", "validation", "test")}
    concode_gold = _shipped("text_to_code/test.jsonl")[:20]
    return {
        "clone_bcb": {"train": bcb[:200], "validation": bcb[200:220], "test": bcb[220:240]},  # train: a seeded 10%
        "defect": {"train": devign[:20], "validation": devign[20:30], "test": devign[30:50]},
        "search_adv": {"train": advtest["train"], "validation": advtest["train"], "test": advtest["test"]},
        "translation_java_cs": trans,
        # the hub's CONCODE test split withholds the gold; the task tests on validation
        "concode": {"train": _shipped("text_to_code/validation.jsonl")[:100], "validation": concode_gold,
                    "test": [{**r, "code": ""} for r in concode_gold]},
    }


def longest_functions(n: int) -> list[dict]:
    """The n longest real Devign functions (defect schema): inputs far past any model's limit."""
    return sorted(_shipped("defect_detection/pool.jsonl"), key=lambda r: -len(r["func"]))[:n]


def write_datasets(root: Path, tasks: Sequence[str] | None = None) -> None:
    for task, splits in task_splits().items():
        if tasks is None or task in tasks:
            cfg = task_yaml(task)
            write_repo(root / cfg["source"]["hub"], {cfg["source"]["config"]: splits}, cfg["schema"])


def build_mirror(root: Path, models: Sequence[str] | None = None, tasks: Sequence[str] | None = None) -> Path:
    """A hub mirror holding the stand-ins of `models` (all by default) and the datasets of `tasks`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in HUB_MODELS.items():
        if models is None or name in models:
            write_model(root, spec)
    write_datasets(root, tasks)
    return root
