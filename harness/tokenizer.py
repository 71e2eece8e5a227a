"""An offline tokenizer for the tiny models built from configs.

No tokenizer can be downloaded here, so the tiny models get a byte-level BPE trained on the shipped
CodeXGLUE code (deterministic, a few seconds, cached under runs/cache). Byte-level keeps every
character and whitespace of code, which a generation task needs to round-trip.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from harness.env import cache_dir
from tasks import DATA_DIR

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "sep_token": "<sep>", "cls_token": "<cls>", "mask_token": "<mask>"}
CODE_FIELDS = ("func", "func1", "code", "java", "cs", "buggy", "fixed", "original_string", "nl")


def _corpus(files: list[Path], max_chars: int):
    """Text fields of the shipped rows, an equal share of the budget per file, so every task's
    language (Java, C#, Ruby, natural language, ...) shapes the vocabulary."""
    share = max_chars // max(1, len(files))
    for path in files:
        seen = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for key in CODE_FIELDS:
                if isinstance(row.get(key), str):
                    seen += len(row[key])
                    yield row[key]
            if seen > share:
                break


def byte_bpe(vocab_size: int = 4096, max_chars: int = 3_000_000, model_max_length: int = 1024,
             append_eos: bool = False) -> PreTrainedTokenizerFast:
    """Train (once) and load a byte-level BPE tokenizer on the shipped code samples.
    append_eos: end every sequence with </s>, as T5-style models expect."""
    from tokenizers import ByteLevelBPETokenizer

    # Train and validation rows only: test text must not shape the vocabulary of models scored on it.
    files = sorted(p for p in DATA_DIR.rglob("*.jsonl") if p.stem in ("train", "validation"))
    listing = [(str(p.relative_to(DATA_DIR)), p.stat().st_size) for p in files]  # contents change -> retrain
    key = hashlib.sha256(f"{vocab_size}-{max_chars}-{listing}".encode()).hexdigest()[:12]
    path = cache_dir("tokenizers") / f"byte_bpe-{vocab_size}-{key}" / "tokenizer.json"
    if not path.exists():
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(_corpus(files, max_chars), vocab_size=vocab_size, min_frequency=2,
                                special_tokens=list(SPECIAL.values()), show_progress=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        bpe.save(str(tmp))
        tmp.replace(path)  # atomic: parallel cells never read a half-written file
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), model_max_length=model_max_length, **SPECIAL)
    if append_eos:
        from tokenizers.processors import TemplateProcessing

        eos = SPECIAL["eos_token"]
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
            special_tokens=[(eos, tokenizer.convert_tokens_to_ids(eos))])
    return tokenizer
