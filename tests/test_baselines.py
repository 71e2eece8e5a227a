"""Published baselines in the task YAMLs (`baselines:`): well formed, on the harness's keys and scales.

Every task YAML must compose and instantiate; each baseline entry names its model, its scores and its
source; every score key is one metrics.compute returns for the task's metric (plus the CodeBLEU keys
where the task passes lang=); every value lies in its key's range, on the scale metrics.compute uses.
"""
from __future__ import annotations

import math
import re

import hydra.utils
import pytest

import metrics
from conftest import CONF, compose

TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))

UNIT, PERCENT = (0.0, 1.0), (0.0, 100.0)
#: the range of each published key, on metrics.compute's scale (see shared/codexglue/METRICS.md)
SCALE: dict[str, dict[str, tuple[float, float]]] = {
    "clone_detection_big_clone_bench": {"f1": UNIT, "precision": UNIT, "recall": UNIT},
    "clone_detection_poj104": {"map_at_r": UNIT},
    "defect_detection": {"accuracy": UNIT},
    "code_completion_token": {"token_accuracy": PERCENT},
    "code_completion_line": {"exact_match": PERCENT, "edit_sim": PERCENT},
    "code_refinement": {"bleu": PERCENT, "exact_match": PERCENT},
    "code_to_code_trans": {"bleu": PERCENT, "exact_match": PERCENT},
    "text_to_code": {"bleu": PERCENT, "exact_match": PERCENT},
    "code_to_text": {"bleu": PERCENT},
    "nl_code_search_adv": {"mrr": UNIT},
    "nl_code_search_webquery": {"accuracy": UNIT, "f1": UNIT, "precision": UNIT, "recall": UNIT},
}
CODEBLEU_SCALE = {key: UNIT for key in metrics.CODEBLEU_KEYS}


def instantiate(name: str):
    cfg = compose([f"task={name}"])
    return hydra.utils.instantiate(cfg.task, _convert_="all")


def allowed_keys(task) -> set[str]:
    keys = set(metrics.METRIC_KEYS[task.metric])
    if (task.metric_kwargs or {}).get("lang"):
        keys |= set(metrics.CODEBLEU_KEYS)
    return keys


def key_range(task, key: str) -> tuple[float, float]:
    if key in CODEBLEU_SCALE:
        return CODEBLEU_SCALE[key]
    return SCALE[task.metric][key]


def test_every_task_yaml_is_checked():
    assert len(TASKS) >= 21 and "clone_bcb" in TASKS and "code_corpus" in TASKS


@pytest.mark.parametrize("name", TASKS)
def test_baselines_well_formed(name):
    task = instantiate(name)
    assert task.name == name
    baselines = list(task.baselines)
    keys = allowed_keys(task)
    seen = set()
    for i, entry in enumerate(baselines):
        where = f"{name}.baselines[{i}]"
        assert set(entry) == {"model", "scores", "source"}, f"{where}: keys {sorted(entry)}"
        assert isinstance(entry["model"], str) and entry["model"].strip(), f"{where}: model"
        assert isinstance(entry["source"], str) and entry["source"].strip(), f"{where}: source"
        assert entry["model"] not in seen, f"{where}: model {entry['model']!r} listed twice"
        seen.add(entry["model"])
        scores = entry["scores"]
        assert isinstance(scores, dict) and scores, f"{where}: scores must be a non-empty mapping"
        for key, value in scores.items():
            assert key in keys, f"{where}: {key!r} is not a key of {task.metric} ({sorted(keys)})"
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}.{key}: {value!r}"
            assert math.isfinite(value), f"{where}.{key}: {value!r}"
            lo, hi = key_range(task, key)
            assert lo <= value <= hi, f"{where}.{key} = {value} outside [{lo}, {hi}]"
            if (lo, hi) == PERCENT:
                # a 0-100 key holding a value in (0, 1] is almost surely a fraction left unconverted
                assert value == 0 or value > 1, f"{where}.{key} = {value}: on 0-100, not 0-1?"


def test_sources_cite_a_commit():
    for name in TASKS:
        for entry in instantiate(name).baselines:
            assert re.search(r"\(commit [0-9a-f]{40}\)", entry["source"]), f"{name}: {entry['source']}"


def test_variants_do_not_inherit_parent_baselines():
    """Hydra replaces lists: a variant must set its own `baselines:`, else it shows its parent's."""
    for name in TASKS:
        text = (CONF / "task" / f"{name}.yaml").read_text()
        assert re.search(r"^baselines:", text, re.M), f"{name}.yaml sets no baselines: of its own"
    pairs = [("summarize_ruby", "summarize_go"), ("refinement_small", "refinement_medium"),
             ("translation_java_cs", "translation_cs_java"), ("completion_token_java", "completion_token_python"),
             ("completion_line_python", "completion_line_java")]
    for parent, child in pairs:
        assert list(instantiate(parent).baselines) != list(instantiate(child).baselines), (parent, child)


def test_code_corpus_has_none():
    assert list(instantiate("code_corpus").baselines) == []


@pytest.mark.parametrize("name, model, key, value", [
    ("clone_bcb", "CodeBERT", "f1", 0.941),                     # binary F1, 0-1
    ("clone_poj104", "CodeBERT", "map_at_r", 0.8267),           # README 82.67 (%)
    ("defect", "CodeBERT", "accuracy", 0.6208),                 # README 62.08 (%)
    ("completion_token_python", "CodeGPT-adapted", "token_accuracy", 76.60),
    ("completion_token_java", "CodeGPT-adapted", "token_accuracy", 77.73),
    ("completion_line_python", "CodeGPT-adapted", "exact_match", 42.37),
    ("completion_line_java", "CodeGPT-adapted", "edit_sim", 63.45),
    ("refinement_small", "Naive copy", "bleu", 78.06),
    ("refinement_medium", "Naive copy", "bleu", 90.91),
    ("refinement_small", "CodeBERT", "codebleu", 0.7558),      # README 75.58 (x100)
    ("translation_java_cs", "CodeBERT", "bleu", 79.92),
    ("translation_cs_java", "CodeBERT", "bleu", 72.14),
    ("concode", "CodeGPT-adapted", "codebleu", 0.3598),
    ("search_adv", "CodeBERT", "mrr", 0.2719),
    ("search_webquery", "CodeBERT (trained on CodeSearchNet + CoSQA)", "accuracy", 0.5287),
    ("summarize_ruby", "CodeBERT", "bleu", 12.16),
    ("summarize_php", "CodeBERT", "bleu", 25.16),
])
def test_headline_numbers(name, model, key, value):
    """A few published numbers, each on the scale metrics.compute returns for its key."""
    by_model = {e["model"]: e["scores"] for e in instantiate(name).baselines}
    assert by_model[model][key] == pytest.approx(value, abs=1e-12)


def test_published_baselines_do_not_change_the_cell_key():
    """Adding or correcting a published number must not make finished cells run again."""
    from harness.config import config_hash

    base = compose(["task=defect"])
    edited = compose(["task=defect", "task.baselines=[]"])
    other = compose(["task=defect", "task.max_source_length=128"])
    assert config_hash(base) == config_hash(edited) != config_hash(other)
