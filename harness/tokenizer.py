"""An offline tokenizer for the tiny models built from configs.

No tokenizer can be downloaded here, so the tiny models get a byte-level BPE trained on the shipped
CodeXGLUE rows (deterministic, a few seconds, cached under runs/cache). Which files and fields it
reads comes from the task YAMLs: each task's `tokenizer_fields` of the shipped files its train and
validation splits draw from, never a file its test split draws from (test text must not shape the
vocabulary of models scored on it). Byte-level keeps every character and whitespace of code, which
a generation task needs to round-trip.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerFast

from harness.env import cache_dir
from harness.files import build_once
from tasks import DATA_DIR

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "sep_token": "<sep>", "cls_token": "<cls>", "mask_token": "<mask>"}
TASK_CONF = Path(__file__).resolve().parents[1] / "conf" / "task"


def task_yaml(name: str) -> dict:
    """A task YAML with its defaults chain merged, as Hydra composes it (no interpolation needed)."""
    own = OmegaConf.load(TASK_CONF / f"{name}.yaml")
    parents = [d for d in own.pop("defaults", []) if d != "_self_"]
    merged = OmegaConf.merge(*(task_yaml(p) for p in parents), own) if parents else own
    return OmegaConf.to_container(merged)


def corpus_files() -> dict[Path, list[str]]:
    """Shipped file -> the text fields the tokenizer learns from it, from every task YAML."""
    from tasks.protocol import clean, sources_of

    found: dict[Path, list[str]] = {}
    for path in sorted(TASK_CONF.glob("*.yaml")):
        cfg = task_yaml(path.stem)
        shipped, fields = (cfg.get("source") or {}).get("shipped"), cfg.get("tokenizer_fields") or []
        if not shipped or not fields:
            continue
        specs = {s: clean(spec) for s, spec in shipped["splits"].items() if spec is not None}
        tested = set(sources_of(specs["test"])) if "test" in specs else set()
        for split in ("train", "validation"):
            for name in sources_of(specs[split]) if split in specs else []:
                if name not in tested:
                    file = DATA_DIR / shipped["dir"] / f"{name}.jsonl"
                    found[file] = sorted(set(found.get(file, [])) | set(fields))
    return found


def _corpus(files: dict[Path, list[str]], max_chars: int):
    """The chosen fields of the shipped rows, an equal share of the budget per file, so every
    task's language (Java, C#, Ruby, natural language, ...) shapes the vocabulary."""
    share = max_chars // max(1, len(files))
    for path, fields in files.items():
        seen = 0
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for key in fields:
                value = row.get(key)
                text = " ".join(value) if isinstance(value, list) else value
                if isinstance(text, str):
                    seen += len(text)
                    yield text
            if seen > share:
                break


def byte_bpe(vocab_size: int = 4096, max_chars: int = 3_000_000, model_max_length: int = 1024,
             append_eos: bool = False) -> PreTrainedTokenizerFast:
    """Train (once) and load a byte-level BPE tokenizer on the shipped code samples.
    append_eos: end every sequence with </s>, as T5-style models expect."""
    from tokenizers import ByteLevelBPETokenizer

    files = corpus_files()
    listing = [(str(p.relative_to(DATA_DIR)), p.stat().st_size, f) for p, f in files.items()]  # change -> retrain
    key = hashlib.sha256(f"{vocab_size}-{max_chars}-{listing}".encode()).hexdigest()[:12]
    path = cache_dir("tokenizers") / f"byte_bpe-{vocab_size}-{key}" / "tokenizer.json"

    def train(tmp: Path) -> None:
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(_corpus(files, max_chars), vocab_size=vocab_size, min_frequency=2,
                                special_tokens=list(SPECIAL.values()), show_progress=False)
        bpe.save(str(tmp))

    build_once(path, train)  # trained by one process; the others wait for it and load its file
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), model_max_length=model_max_length, **SPECIAL)
    if append_eos:
        from tokenizers.processors import TemplateProcessing

        eos = SPECIAL["eos_token"]
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
            special_tokens=[(eos, tokenizer.convert_tokens_to_ids(eos))])
    return tokenizer
