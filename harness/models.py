"""Load a model and tokenizer for a task head, quantize it if the method says so, attach the method.

Everything that varies lives in config: the model YAML says where weights come from (a path, or a
config to build random weights from), the method YAML gives the PEFT config, the quantization config
and an optional preparation step. Heads are a table keyed by the task's head, not branches.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness.env import Device, cache_dir



@dataclass(frozen=True)
class Head:
    auto_class: Any
    peft_task: str
    new_layers: bool  # a freshly initialised head that must train (and be saved) with any method


HEADS: dict[str, Head] = {
    "sequence_classification": Head(transformers.AutoModelForSequenceClassification, "SEQ_CLS", True),
    "causal_lm": Head(transformers.AutoModelForCausalLM, "CAUSAL_LM", False),
    "seq2seq_lm": Head(transformers.AutoModelForSeq2SeqLM, "SEQ_2_SEQ_LM", False),
    "embedding": Head(transformers.AutoModel, "FEATURE_EXTRACTION", False),
}


def load_tokenizer(model_cfg: DictConfig):
    tokenizer = instantiate(model_cfg.tokenizer)
    if tokenizer.pad_token is None:  # decoders often ship without one; padding needs it
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def materialize(model_cfg: DictConfig, tokenizer) -> str:
    """Build a model with random weights from its config once and save it, so every later load
    (quantized included) goes through from_pretrained like a real checkpoint."""
    build = OmegaConf.to_container(model_cfg.build, resolve=True)
    key = hashlib.sha256(json.dumps([build, len(tokenizer)], sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("models") / f"{model_cfg.name}-{key}"
    if not (path / "config.json").exists():
        config = instantiate(model_cfg.build.config, vocab_size=len(tokenizer),
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(model_cfg.build.init_seed)
        model = instantiate({"_target_": model_cfg.build.auto_class + ".from_config"}, config)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(path)  # atomic; a parallel cell may have won the race, which is fine
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(path)


def load_model(model_cfg: DictConfig, method_cfg: DictConfig, head: str, device: Device,
               head_kwargs: dict[str, Any] | None = None):
    """Returns (model with the method attached, tokenizer)."""
    tokenizer = load_tokenizer(model_cfg)
    path = model_cfg.path or materialize(model_cfg, tokenizer)
    spec = HEADS[head]
    kwargs: dict[str, Any] = {"dtype": torch.float32, "device_map": {"": device.type}}
    kwargs.update(head_kwargs or {}, pad_token_id=tokenizer.pad_token_id)
    if method_cfg.quantization is not None:
        kwargs["quantization_config"] = instantiate(
            method_cfg.quantization, bnb_4bit_compute_dtype=device.dtype,
            llm_int8_skip_modules=list(model_cfg.head_modules), _convert_="all")
    model = spec.auto_class.from_pretrained(path, **kwargs)
    if method_cfg.prepare is not None:
        model = instantiate(method_cfg.prepare)(model)
    if method_cfg.peft is not None:
        import peft

        peft_config = instantiate(method_cfg.peft, task_type=spec.peft_task, _convert_="all")
        if spec.new_layers:
            peft_config.modules_to_save = list(model_cfg.head_modules)
        model = peft.get_peft_model(model, peft_config)
    return model, tokenizer
