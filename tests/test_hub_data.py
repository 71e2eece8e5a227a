"""The hub data path, offline: tiny repos in the hub's own layout (README `configs:` + parquet) under
a hub mirror or a fake Hugging Face cache. Each task follows its official protocol on them, a split
that would train on official test rows or test on withheld gold is refused before training, where
the data came from is said and recorded, and bad hub data is named by repo, split, row and field."""
from __future__ import annotations

import json
import random
import subprocess

import pytest
from hydra.utils import instantiate

from conftest import ROOT, compose, harness_cmd, subprocess_env
from harness.run import run
from hubfix import hub_cache_dir, hub_features, write_repo
from tasks import DATA_DIR
from tasks.schema import DataError

BCB = "google/code_x_glue_cc_clone_detection_big_clone_bench"
LINE, TOKEN = "google/code_x_glue_cc_code_completion_line", "google/code_x_glue_cc_code_completion_token"
CONCODE, POJ = "google/code_x_glue_tc_text_to_code", "google/code_x_glue_cc_clone_detection_poj104"
SMOKE = ["trainer=smoke", "tracker=none"]


def shipped(rel: str) -> list[dict]:
    return [json.loads(line) for line in (DATA_DIR / rel).read_text(encoding="utf-8").splitlines()]


def task_of(name: str, *overrides: str):
    return instantiate(compose([f"task={name}", *overrides]).task, _convert_="all")


@pytest.fixture(scope="module")
def bcb_rows():
    rows = shipped("clone_detection_big_clone_bench/pool.jsonl")
    return {"train": rows[:2000], "validation": rows[2000:2500], "test": rows[2500:]}


@pytest.fixture
def mirror(tmp_path, bcb_rows):
    root = tmp_path / "mirror"
    schema = task_of("clone_bcb").schema
    write_repo(root / BCB, {"default": bcb_rows}, schema, commit="c0ffee1234")
    return root


def test_bcb_takes_the_official_seeded_tenth_of_train_and_validation_and_all_of_test(mirror, bcb_rows):
    task = task_of("clone_bcb")
    data = task.load_data(task.data_plan(str(mirror)))
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 200, "validation": 50, "test": 500}
    drawn = sorted(random.Random(123456).sample(range(2000), 200))  # what the official run.py draws
    assert data.splits["train"]["id"] == [bcb_rows["train"][i]["id"] for i in drawn]
    assert data.splits["test"]["id"] == [r["id"] for r in bcb_rows["test"]]
    record = data.record()
    assert record["source"] == [f"{BCB}[default]"] and record["revision"] == {f"{BCB}[default]": "c0ffee1234"}
    assert record["comparable"] is True and record["why_not_comparable"] is None


def test_a_cell_says_and_records_what_data_it_used(mirror, in_tmp, capsys):
    result = run(compose([f"hub_mirror={mirror}", "model=tiny_bert", *SMOKE]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert f"[harness] data: {BCB}[default]@c0ffee1234 from hub mirror {mirror}" in capsys.readouterr().out
    data = json.loads((in_tmp / "cell" / "result.json").read_text())["data"]
    assert data["splits"] == {"train": 200, "validation": 50, "test": 500}   # before max_*_examples
    assert data["comparable"] is False and "trainer.max_train_examples=16 keeps 16 of 200" in data["why_not_comparable"]
    full = run(compose([f"hub_mirror={mirror}", "model=tiny_bert", *SMOKE, "trainer.max_train_examples=null",
                        "trainer.max_eval_examples=null"]), in_tmp / "full")
    assert full.status == "FINISHED" and full.data["comparable"] is True
    assert len((in_tmp / "full" / "predictions" / "predictions.txt").read_text().splitlines()) == 500


def test_hub_mirror_also_comes_from_the_environment(mirror, monkeypatch):
    monkeypatch.setenv("HARNESS_HUB_MIRROR", str(mirror))
    cfg = compose([])
    assert cfg.hub_mirror == str(mirror)
    assert instantiate(cfg.task, _convert_="all").data_plan(cfg.hub_mirror).kind == "hub"


def test_a_repo_missing_from_the_mirror_is_an_error_never_a_fall_back(tmp_path, in_tmp):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"hub_mirror={empty}: {BCB} is not in the mirror \(expected {empty}/{BCB}"):
        task_of("clone_bcb").data_plan(str(empty))
    result = run(compose([f"hub_mirror={empty}", "model=tiny_bert", *SMOKE]), in_tmp / "cell")
    assert result.status == "FAILED" and BCB in result.reason and str(empty) in result.reason
    assert not result.data  # nothing was read


def test_offline_without_the_cache_uses_the_shipped_rows_and_says_why(capsys, in_tmp):
    plan = task_of("clone_bcb").data_plan()
    assert plan.kind == "shipped" and "not in the local Hugging Face cache" in plan.why
    assert plan.comparable is False and "hash-cut from 3,000 official test pairs" in plan.why_not_comparable


def test_the_local_hugging_face_cache_is_used_offline(tmp_path, bcb_rows):
    """The normal cluster setup: `hf download` on a login node, training offline on a compute node."""
    cache = tmp_path / "hf-cache"
    write_repo(hub_cache_dir(cache, BCB, "abc123commit"), {"default": bcb_rows}, task_of("clone_bcb").schema)
    out = tmp_path / "out"
    proc = subprocess.run(harness_cmd("model=tiny_bert", *SMOKE, f"hydra.run.dir={out}"), cwd=tmp_path,
                          env={**subprocess_env(), "HF_HUB_CACHE": str(cache), "HARNESS_CACHE_DIR": str(tmp_path / "c")},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{BCB}[default]@abc123commit from the local Hugging Face cache (offline)" in proc.stdout
    record = json.loads((out / "result.json").read_text())["data"]
    assert record["revision"] == {f"{BCB}[default]": "abc123commit"} and record["splits"]["test"] == 500


def _line_mirror(root):
    write_repo(root / LINE, {"python": {"train": shipped("code_completion_line/python/test.jsonl")}},
               task_of("completion_line_python").schema)
    token = [{"id": i, "path": f"repo/f{i}.py", "code": r["code"]}
             for i, r in enumerate(shipped("code_completion_token/python/validation.jsonl")[:12])]
    write_repo(root / TOKEN, {"python": {"train": token}}, {"id": "int", "path": "str", "code": "list[str]"})
    return root


def test_line_completion_tests_on_the_hubs_only_split_and_trains_on_token_completion_files(tmp_path, in_tmp):
    mirror = _line_mirror(tmp_path / "mirror")
    task = task_of("completion_line_python")
    data = task.load_data(task.data_plan(str(mirror)))
    assert len(data.splits["test"]) == 50 and data.splits["test"].column_names == ["id", "input", "gt"]
    assert data.splits["train"].column_names == ["text"] and len(data.splits["train"]) == 12
    assert data.documents == {"train"}
    assert data.record()["source"] == [f"{TOKEN}[python]", f"{LINE}[python]"]
    result = run(compose(["task=completion_line_python", "model=tiny_llama", f"hub_mirror={mirror}",
                          "task.max_target_length=12", *SMOKE]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    skipped = run(compose(["task=completion_line_python", "model=tiny_t5", f"hub_mirror={mirror}", *SMOKE]),
                  in_tmp / "t5")
    assert skipped.status == "SKIPPED" and "needs a decoder" in skipped.reason


@pytest.mark.parametrize("override", [f"task.source.splits.train.hub={LINE}", "+task.source.splits.validation={from: train}"])
def test_training_or_tuning_on_the_official_line_completion_test_set_is_refused(override, tmp_path):
    mirror = _line_mirror(tmp_path / "mirror")
    with pytest.raises(DataError, match=r"would be drawn from hub split 'train' of .*code_completion_line\[python\], "
                                        r"which holds official test rows"):
        task_of("completion_line_python", override).data_plan(str(mirror))


def _concode_mirror(root):
    gold = shipped("text_to_code/test.jsonl")[:100]
    withheld = [{**r, "code": ""} for r in gold]  # what the hub serves as test
    write_repo(root / CONCODE, {"default": {"train": shipped("text_to_code/validation.jsonl")[:300],
                                            "validation": gold, "test": withheld}},
               task_of("concode").schema)
    return root


def test_concode_tests_on_the_validation_split_and_cuts_its_validation_from_train(tmp_path):
    task = task_of("concode")
    data = task.load_data(task.data_plan(str(_concode_mirror(tmp_path / "m"))))
    assert len(data.splits["test"]) == 100 and all(data.splits["test"]["code"])
    train, validation = set(data.splits["train"]["id"]), set(data.splits["validation"]["id"])
    assert not train & validation and len(train) + len(validation) == 300 and 0 < len(validation) < 20


def test_a_test_split_whose_gold_is_withheld_is_refused_before_training(tmp_path, in_tmp):
    mirror = _concode_mirror(tmp_path / "m")
    result = run(compose(["task=concode", "model=tiny_llama", f"hub_mirror={mirror}", "task.source.splits.test.from=test",
                          *SMOKE]), in_tmp / "cell")
    assert result.status == "FAILED"
    assert "every reference of the test split (100 rows" in result.reason and "gold is withheld" in result.reason
    assert not (in_tmp / "cell" / "adapter").exists()


def _poj_mirror(root):
    """Two real C functions per problem 1..104 (Devign code as program text), in hub splits cut one
    problem off the official ranges, each split's ids counting from 0 as the hub's do."""
    code = [r["func"] for r in shipped("defect_detection/pool.jsonl")[:208]]
    by_problem = {p: [code[2 * (p - 1)], code[2 * p - 1]] for p in range(1, 105)}
    cuts = {"train": range(1, 66), "validation": range(66, 82), "test": range(82, 105)}
    splits = {s: [{"id": i, "code": c, "label": str(p)}
                  for i, (p, c) in enumerate((p, c) for p in problems for c in by_problem[p])]
              for s, problems in cuts.items()}
    write_repo(root / POJ, {"default": splits}, task_of("clone_poj104").schema)
    return root


def test_poj104_uses_the_official_problem_ranges(tmp_path, in_tmp):
    mirror = _poj_mirror(tmp_path / "m")
    task = task_of("clone_poj104")
    data = task.load_data(task.data_plan(str(mirror)))
    labels = {s: sorted({int(x) for x in d["label"]}) for s, d in data.splits.items()}
    assert labels == {"train": list(range(1, 65)), "validation": list(range(65, 81)), "test": list(range(81, 105))}
    ids = [i for d in data.splits.values() for i in d["id"]]
    assert len(ids) == len(set(ids)) == 208
    result = run(compose(["task=clone_poj104", "model=tiny_llama", f"hub_mirror={mirror}", *SMOKE,
                          "trainer.max_eval_examples=null"]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.data["splits"] == {"train": 128, "validation": 32, "test": 48}


def test_a_label_outside_the_integer_ranges_is_named(tmp_path):
    rows = [{"id": 0, "code": "int f();", "label": "1"}, {"id": 1, "code": "int g();", "label": "home"}]
    write_repo(tmp_path / POJ, {"default": {"train": rows, "validation": rows[:1], "test": rows[:1]}},
               task_of("clone_poj104").schema)
    task = task_of("clone_poj104")
    with pytest.raises(DataError, match=r"row 1: field 'label' is 'home'; expected an integer"):
        task.load_data(task.data_plan(str(tmp_path)))


def _bcb_with(tmp_path, rows, features=None, card_rows=None):
    write_repo(tmp_path / BCB, {"default": {"train": rows, "validation": rows, "test": rows}},
               task_of("clone_bcb").schema, features=features, card_rows=card_rows)
    task = task_of("clone_bcb")
    return lambda: task.load_data(task.data_plan(str(tmp_path)))


def test_bad_hub_data_is_named_by_repo_split_row_and_field(tmp_path, bcb_rows):
    rows = bcb_rows["test"][:20]
    schema = dict(task_of("clone_bcb").schema, label="str")
    load = _bcb_with(tmp_path / "type", [{**r, "label": str(r["label"])} for r in rows], hub_features(schema))
    with pytest.raises(DataError, match=rf"{BCB}\[default\]\[train\] row 0: field 'label' is string; expected bool"):
        load()
    nulls = [dict(r) for r in rows]
    nulls[7]["func2"] = None
    with pytest.raises(DataError, match=r"\[train\] row 7: field 'func2' is null; expected str"):
        _bcb_with(tmp_path / "null", nulls)()
    dupes = [dict(r) for r in rows]
    dupes[12]["id"] = dupes[3]["id"]
    with pytest.raises(DataError, match=r"\[train\] row 12: field 'id' value .* duplicates row 3; expected unique ids"):
        _bcb_with(tmp_path / "dup", dupes)()


def test_an_incomplete_download_is_refused(tmp_path, bcb_rows):
    load = _bcb_with(tmp_path, bcb_rows["test"][:20], card_rows={"default": {"test": 415416}})
    with pytest.raises(DataError, match="do not hold the rows its dataset card lists"):
        load()


def test_tokenised_features_are_cached_by_data_tokenizer_and_encoding(tmp_path, capsys):
    from harness.features import build_features
    from harness.models import load_tokenizer

    task = task_of("clone_bcb")
    data = task.load_data(task.data_plan())
    tok = load_tokenizer(compose(["model=tiny_bert"]).model)
    first = build_features(task, data.splits["test"], data.plan.identity, tok, "encoder", 61, label="t")
    again = build_features(task, data.splits["test"], data.plan.identity, tok, "encoder", 61, label="t")
    out = capsys.readouterr().out
    assert "t: tokenising 380 rows" in out and "t: 380 features from the cache" in out
    assert first["input_ids"] == again["input_ids"] and max(again["length"]) <= 61
    other = build_features(task, data.splits["test"], data.plan.identity, tok, "encoder", 29, label="t")
    assert "tokenising" in capsys.readouterr().out and max(other["length"]) <= 29


def test_py150_token_completion_splits_the_hub_train_files_as_codexglue_does(tmp_path, in_tmp):
    """The hub's python train split holds python100k_train in order: the first 95,000 files are the
    official train set, the last 5,000 its dev set; the hub's own tokenisation is flagged."""
    prefixes = shipped("code_completion_token/python/validation.jsonl")
    ids = [*range(0, 8), *range(94_996, 95_004)]
    train = [{"id": i, "path": f"repo/f{i}.py", "code": prefixes[k]["code"]} for k, i in enumerate(ids)]
    test = [{"id": i, "path": f"repo/t{i}.py", "code": prefixes[20 + i]["code"]} for i in range(4)]
    mirror = tmp_path / "m"
    write_repo(mirror / TOKEN, {"python": {"train": train, "test": test}}, task_of("completion_token_python").schema)
    task = task_of("completion_token_python")
    data = task.load_data(task.data_plan(str(mirror)))
    assert data.splits["train"]["id"] == [*range(0, 8), 94_996, 94_997, 94_998, 94_999]
    assert data.splits["validation"]["id"] == [95_000, 95_001, 95_002, 95_003]
    assert data.record()["comparable"] is False and "tokenised the raw py150 files" in data.record()["why_not_comparable"]
    result = run(compose(["task=completion_token_python", "model=tiny_llama", f"hub_mirror={mirror}", *SMOKE]),
                 in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    assert result.data["splits"] == {"train": 12, "validation": 4, "test": 4}
