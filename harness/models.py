"""Load a model and tokenizer for a task head, quantize it if the method says so, attach the method.

Everything that varies lives in config: the model YAML says where weights come from (a path, or a
config to build random weights from), the method YAML gives the PEFT config, the quantization config
and an optional preparation step. Heads are a table keyed by the task's head, not branches.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness.env import Device, cache_dir
from harness.files import build_once


@dataclass(frozen=True)
class Head:
    auto_class: Any
    peft_task: str
    new_layers: bool  # a freshly initialised head that must train (and be saved) with any method
    unquantized: tuple[str, ...] = ()  # output layers kept in full precision (often tied to the embeddings)


HEADS: dict[str, Head] = {
    "sequence_classification": Head(transformers.AutoModelForSequenceClassification, "SEQ_CLS", True),
    "causal_lm": Head(transformers.AutoModelForCausalLM, "CAUSAL_LM", False, ("lm_head",)),
    "seq2seq_lm": Head(transformers.AutoModelForSeq2SeqLM, "SEQ_2_SEQ_LM", False, ("lm_head",)),
    "embedding": Head(transformers.AutoModel, "FEATURE_EXTRACTION", False),
}


def with_hub_mirror(cfg: DictConfig) -> tuple[DictConfig, object]:
    """The config with a hub model's path pointing into `hub_mirror` (DIR/<owner>/<name>, as
    `hf download REPO --local-dir` writes it), and what identifies those weights (the revision that
    download recorded, else the files' names, sizes and mtimes; None without a mirror). The config
    hash keeps the repo id, not the path, and takes the identity, so other weights make another cell.
    A model missing from the mirror is an error naming both."""
    if not cfg.get("hub_mirror") or not cfg.model.get("hub"):
        return cfg, None
    from tasks.sources import mirror_origin

    origin = mirror_origin(cfg.model.path, None, cfg.hub_mirror, "model")
    local = cfg.copy()
    local.model.path = str(origin.path)
    return local, origin.stamp


def load_tokenizer(model_cfg: DictConfig):
    try:
        tokenizer = instantiate(model_cfg.tokenizer)
    except Exception as err:
        if not model_cfg.get("hub"):
            raise
        raise RuntimeError(
            f"model {model_cfg.name} loads {model_cfg.path} from the Hugging Face hub and it is not in the "
            "local cache; run with the hub reachable (HF_HUB_OFFLINE=0), set hub_mirror=DIR (a folder "
            f"holding {model_cfg.path}/), or set model.path to a local copy") from err
    if tokenizer.pad_token is None:  # decoders often ship without one; padding needs it
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def materialize(model_cfg: DictConfig, tokenizer) -> str:
    """Build a model with random weights from its config once and save it, so every later load
    (quantized included) goes through from_pretrained like a real checkpoint. The vocabulary is the
    tokenizer's unless the config sets a (larger) vocab_size, to match a real model's size."""
    build_cfg = OmegaConf.to_container(model_cfg.build, resolve=True)
    key = hashlib.sha256(json.dumps([build_cfg, len(tokenizer)], sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir("models") / f"{model_cfg.name}-{key}"

    def build(tmp: Path) -> None:
        vocab = max(len(tokenizer), int(build_cfg["config"].get("vocab_size") or 0))
        config = instantiate(model_cfg.build.config, vocab_size=vocab,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        with torch.random.fork_rng(devices=[]):  # a cold cache must not move the cell's seeded generator
            torch.manual_seed(model_cfg.build.init_seed)
            model = instantiate({"_target_": model_cfg.build.auto_class + ".from_config"}, config)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    build_once(path, build)  # one process builds it (under its lock), the others load what it saved
    return str(path)


def base_dtype(method_cfg: DictConfig, device: Device) -> torch.dtype:
    """The dtype the base model loads in. On a GPU the compute dtype (bf16, or fp16 where bf16 is not
    supported): a frozen base then takes half the memory of fp32. fp32 on the CPU, and for a method
    whose YAML says `base_dtype: float32` (full fine-tuning: fp32 master weights under autocast)."""
    if device.type == "cpu" or method_cfg.get("base_dtype") == "float32":
        return torch.float32
    return device.dtype


def attention_implementation(model_cfg: DictConfig, device: Device) -> str:
    """`model.attn_implementation`: auto is flash-attention 2 on a GPU where the flash_attn package
    is installed, else PyTorch's scaled-dot-product attention (sdpa); any other value is passed on."""
    setting = model_cfg.get("attn_implementation", "auto")
    if setting != "auto":
        return setting
    return "flash_attention_2" if device.type == "cuda" and importlib.util.find_spec("flash_attn") else "sdpa"


def safe_loading(model_cfg: DictConfig) -> dict[str, bool]:
    """from_pretrained arguments: weights from safetensors only (a pickled checkpoint runs code as it
    loads), and a repository's own model code only where the model YAML says `trust_remote_code: true`
    (such runs are tagged harness.trust_remote_code=true)."""
    trust = bool(model_cfg.get("trust_remote_code", False))
    if trust:
        print(f"[harness] warning: model {model_cfg.name} runs code from {model_cfg.path} (trust_remote_code: true)",
              flush=True)
    return {"use_safetensors": True, "trust_remote_code": trust}


def load_model(model_cfg: DictConfig, method_cfg: DictConfig, head: str, device: Device,
               head_kwargs: dict[str, Any] | None = None, gradient_checkpointing: bool = False):
    """Returns (model with the method attached, tokenizer). Trainable parameters are fp32 whatever
    the base's dtype; gradient checkpointing (non-reentrant) recomputes activations in backward."""
    model, tokenizer = load_base(model_cfg, method_cfg, head, device, head_kwargs)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = attach_method(model, model_cfg, method_cfg, HEADS[head])
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
    return model, tokenizer


def load_base(model_cfg: DictConfig, method_cfg: DictConfig, head: str, device: Device,
              head_kwargs: dict[str, Any] | None = None):
    """Returns (the base model with its head, quantized as the method says, no method attached;
    tokenizer): what several saved adapters share (harness.evaluate)."""
    tokenizer = load_tokenizer(model_cfg)
    path = model_cfg.path or materialize(model_cfg, tokenizer)
    spec = HEADS[head]
    kwargs: dict[str, Any] = {"dtype": base_dtype(method_cfg, device), "device_map": {"": device.type},
                              "attn_implementation": attention_implementation(model_cfg, device),
                              **safe_loading(model_cfg)}
    kwargs.update(head_kwargs or {}, pad_token_id=tokenizer.pad_token_id)
    if method_cfg.get("quantization") is not None:
        kwargs["quantization_config"] = instantiate(
            method_cfg.quantization, bnb_4bit_compute_dtype=device.dtype,
            llm_int8_skip_modules=[*model_cfg.head_modules, *spec.unquantized], _convert_="all")
    return spec.auto_class.from_pretrained(path, **kwargs), tokenizer


def attach_method(model, model_cfg: DictConfig, method_cfg: DictConfig, spec: Head):
    """Prepare the (quantized) model, then attach the method: a PEFT config (`peft:`), or for methods
    PEFT lacks a builder called as attach(model, modules_to_save=[...]) (`attach:`); `full` has neither.
    A freshly initialised head trains with every method."""
    head_modules = list(model_cfg.head_modules) if spec.new_layers else []
    if method_cfg.get("prepare") is not None:
        model = instantiate(method_cfg.prepare)(model)
    if method_cfg.get("peft") is not None:
        import peft

        peft_config = instantiate(method_cfg.peft, task_type=spec.peft_task, _convert_="all")
        if head_modules:
            peft_config.modules_to_save = head_modules
        model = peft.get_peft_model(model, peft_config)
    if method_cfg.get("attach") is not None:
        model = instantiate(method_cfg.attach, _convert_="all")(model, modules_to_save=head_modules)
    return model


def load_trained(model_cfg: DictConfig, method_cfg: DictConfig, head: str, device: Device,
                 adapter_dir: str | Path, head_kwargs: dict[str, Any] | None = None):
    """The model a run saved to adapter_dir: the base loaded as for training, the method attached
    the same way, then the saved (trainable) weights loaded into it. Returns (model, tokenizer)."""
    model, tokenizer = load_model(model_cfg, method_cfg, head, device, head_kwargs)
    if hasattr(model, "load_trained_weights"):  # harness.methods models
        model.load_trained_weights(adapter_dir)
    elif method_cfg.get("peft") is not None:
        _load_peft_weights(model, adapter_dir)
    else:  # full fine-tuning saved the whole model
        model = HEADS[head].auto_class.from_pretrained(adapter_dir, dtype=torch.float32, device_map={"": device.type},
                                                       **safe_loading(model_cfg), **(head_kwargs or {}))
    return model.eval(), tokenizer


def _load_peft_weights(model, adapter_dir: str | Path) -> None:
    """Saved PEFT weights into a freshly attached PEFT model, after the config fields that training
    changed (AdaLoRA's reallocated ranks) so that every tensor fits. The model is left in PEFT's
    inference mode, as PeftModel.from_pretrained leaves it: P-tuning then reads the saved prompt
    embeddings directly instead of recomputing them with its (unsaved) prompt encoder."""
    import peft

    saved = peft.PeftConfig.from_pretrained(str(adapter_dir))
    config = model.peft_config[model.active_adapter]
    if getattr(saved, "rank_pattern", None):
        config.rank_pattern = saved.rank_pattern
    config.inference_mode = True
    result = peft.set_peft_model_state_dict(model, peft.load_peft_weights(str(adapter_dir)))
    unexpected = [k for k in result.unexpected_keys if k != "prompt_embeddings"]  # loaded on their own
    if unexpected:
        raise ValueError(f"{adapter_dir}: weights the model does not have: {unexpected[:5]}")
