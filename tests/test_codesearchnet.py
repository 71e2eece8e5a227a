"""CodeSearchNet itself (hub code-search-net/code_search_net): code search scored as the challenge scores
it (MRR within shuffled pools of 1,000, metrics/codesearchnet.py) and summarisation, on tiny mirrors
in the hub's layout with the corpus's real columns and config names, built from real CodeSearchNet
ruby rows (the shipped CodeXGLUE code-to-text ones)."""
from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import metrics
from conftest import ROOT, compose
from harness.run import run
from hubfix import write_repo
from metrics.codesearchnet import pool_ranks, pools
from metrics.formats import FormatError
from tasks import DATA_DIR
from tasks.codesearchnet_mirror import main as make_mirror
from tasks.schema import DataError

CSN = "code-search-net/code_search_net"
SMOKE = ["trainer=smoke", "tracker=none"]
LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")


def ruby_rows() -> list[dict]:
    return [json.loads(line) for line in (DATA_DIR / "code_to_text/ruby/test.jsonl").read_text().splitlines()[:44]]


def hub_row(r: dict, split: str) -> dict:
    """A row as the hub's code_search_net serves it (its loading script's renaming of the corpus fields)."""
    return {"repository_name": r["repo"], "func_path_in_repository": r["path"], "func_name": r["func_name"],
            "whole_func_string": r["original_string"], "language": r["language"], "func_code_string": r["code"],
            "func_code_tokens": r["code_tokens"], "func_documentation_string": r["docstring"],
            "func_documentation_tokens": r["docstring_tokens"], "split_name": split, "func_code_url": r["url"]}


def task_of(name: str, *overrides: str):
    return instantiate(compose([f"task={name}", *overrides]).task, _convert_="all")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Configs ruby (24 / 6 / 10 rows) and all (every row again, and more): the task reads its own."""
    rows = ruby_rows()
    cuts = {"train": rows[:24], "validation": rows[24:30], "test": rows[30:40]}
    ruby = {s: [hub_row(r, "valid" if s == "validation" else s) for r in part] for s, part in cuts.items()}
    every = {s: part + [hub_row(r, "test") for r in rows[40:]] for s, part in ruby.items()}
    root = tmp_path_factory.mktemp("mirror")
    write_repo(root / CSN, {"all": every, "ruby": ruby}, task_of("codesearchnet_search_ruby").schema, commit="c5n0123")
    return root


# ---- the metric, by hand ------------------------------------------------------------------------------
def test_pool_mrr_by_hand_in_memory_from_files_and_on_the_command_line(tmp_path):
    sizes, ranks = [3] * 6, [1, 2, 3, 1, 1, 2]
    expected = (1 + 1 / 2 + 1 / 3 + 1 + 1 + 1 / 2) / 6          # 13/18 = 0.7222...
    assert metrics.compute("codesearchnet_mrr", sizes, ranks) == {"mrr": pytest.approx(expected, abs=1e-15)}
    assert metrics.round_official("codesearchnet_mrr", {"mrr": expected}) == {"mrr": 0.722}
    st = metrics.compute_per_example("codesearchnet_mrr", sizes, ranks)
    assert st.finalize(st.rows.sum(axis=0))["mrr"] == pytest.approx(expected, abs=1e-15)
    spec = metrics.registry.spec("codesearchnet_mrr")
    gold, pred = tmp_path / "answers.jsonl", tmp_path / "predictions.txt"
    keys = [(i, f"https://github.com/o/r/blob/s/f.rb#L{i}", i // 3, i % 3) for i in (4, 0, 7, 1, 9, 3)]
    spec.write(gold, pred, keys, sizes, ranks)
    assert json.loads(gold.read_text().splitlines()[0]) == {
        "index": 4, "url": "https://github.com/o/r/blob/s/f.rb#L4", "pool": 1, "position": 1, "pool_size": 3}
    assert pred.read_text().splitlines()[:2] == ["4\t1", "0\t2"]
    assert spec.read(str(gold), str(pred)) == (sizes, ranks)
    out = subprocess.run([sys.executable, "-m", "metrics", "codesearchnet_mrr", "--gold", str(gold),
                          "--predictions", str(pred)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout)["mrr"] == 0.722


def test_a_rank_outside_its_pool_or_a_missing_one_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"item 1: rank 4; expected an integer in 1\.\.3"):
        metrics.compute("codesearchnet_mrr", [3, 3], [1, 4])
    spec = metrics.registry.spec("codesearchnet_mrr")
    gold, pred = tmp_path / "answers.jsonl", tmp_path / "predictions.txt"
    spec.write(gold, pred, [(0, "u0", 0, 0), (1, "u1", 0, 1)], [2, 2], [1, 2])
    pred.write_text("0\t1\n")
    with pytest.raises(FormatError, match=r"missing prediction for index '1'"):
        spec.read(str(gold), str(pred))


def test_pool_ranks_by_hand_for_either_anchor_and_ties_count_against():
    codes = np.array([[1, 0], [0, 1], [0.6, 0.8]])
    queries = np.array([[1, 0], [0.8, 0.6], [0, 1]])
    # similarities [query, code]: q0 (1, 0, .6); q1 (.8, .6, .96); q2 (0, 1, .8)
    assert pool_ranks(queries, codes, [np.arange(3)], "query").tolist() == [1, 3, 2]
    # [code, query]: c0 (1, .8, 0); c1 (0, .6, 1); c2 (.6, .96, .8): the challenge's code-anchored ranks
    assert pool_ranks(queries, codes, [np.arange(3)], "code").tolist() == [1, 2, 2]
    twins = np.array([[1, 0], [1, 0], [0, 1]])  # codes 0 and 1 alike: each ranks 2nd for its query
    assert pool_ranks(twins, twins, [np.arange(3)], "query").tolist() == [2, 2, 1]


@pytest.mark.parametrize("n", [10, 999, 2500])
def test_pools_are_the_challenges_shuffled_batches_of_1000(n):
    """MrrSearchTester.evaluate, step by step: seed, shuffle, shrink the batch to a smaller test set,
    cut in order, stop at the first short batch."""
    np.random.seed(0)
    idxs = np.arange(n)
    np.random.shuffle(idxs)
    size = min(1000, n)
    batches = []
    for start in range(0, n, size):
        if len(idxs[start:start + size]) < size:
            break
        batches.append(idxs[start:start + size].tolist())
    assert [p.tolist() for p in pools(n, 1000, seed=0)] == batches
    assert len(batches) == (1 if n < 1000 else n // 1000)


# ---- the task ---------------------------------------------------------------------------------------------
def test_the_task_ranks_each_item_within_its_own_pool(monkeypatch, tmp_path):
    """Pools of 3 in order over 7 rows: two pools, row 6 in none. Pool 0 is the hand example above
    (code-anchored ranks 1, 2, 2); in pool 1 every pair is far closer to its partner (ranks 1)."""
    task = task_of("codesearchnet_search_ruby", "task.pool_size=3", "task.pool_seed=null")
    codes = np.array([[1, 0], [0, 1], [0.6, 0.8], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    queries = np.array([[1, 0], [0.8, 0.6], [0, 1], [1, 0], [0, 1], [-1, 0], [1, 0]], dtype=np.float32)
    def fake_embed(model, seqs, *_):  # the L2-normalised embeddings harness.predict.embed would return
        return torch.tensor(queries if seqs.key == "pair_input_ids" else codes)

    monkeypatch.setattr("harness.predict.embed", fake_embed)
    features = [{"input_ids": [1, 2], "pair_input_ids": [3]} for _ in range(7)]
    ranks = task.predict(None, type("Tok", (), {"pad_token_id": 0}), features, None,
                         compose(SMOKE).trainer, None)
    assert ranks == [1, 2, 2, 1, 1, 1]
    rows = [hub_row(r, "test") for r in ruby_rows()[:7]]
    assert task.references(rows) == [3] * 6
    assert task.score(rows, ranks) == {"mrr": pytest.approx((1 + .5 + .5 + 1 + 1 + 1) / 6)}
    files = task.write_predictions(rows, ranks, tmp_path)
    gold = [json.loads(line) for line in files["gold"].read_text().splitlines()]
    assert [(g["index"], g["pool"], g["position"]) for g in gold] == [(0, 0, 0), (1, 0, 1), (2, 0, 2),
                                                                      (3, 1, 0), (4, 1, 1), (5, 1, 2)]
    assert gold[5]["url"] == rows[5]["func_code_url"]


@pytest.mark.parametrize("override,message", [
    ("task.pool_size=0", r"pool_size is 0; expected a positive integer or null"),
    ("task.pool_anchor=docstring", r"pool_anchor is 'docstring'; expected one of \['query', 'code'\]"),
])
def test_bad_pool_settings_are_refused(override, message):
    with pytest.raises(Exception, match=message):
        task_of("codesearchnet_search_ruby", override)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_reads_its_own_config_of_the_corpus(lang):
    for kind in ("search", "summarize"):
        task = task_of(f"codesearchnet_{kind}_{lang}")
        assert task.name == f"codesearchnet_{kind}_{lang}" and task.source["hub"] == CSN
        assert task.source["config"] == lang and list(task.baselines) == []
    search = task_of(f"codesearchnet_search_{lang}")
    pooling = (search.metric, search.pool_size, search.pool_seed, search.pool_anchor)
    assert pooling == ("codesearchnet_mrr", 1000, 0, "code")
    assert task_of(f"codesearchnet_summarize_{lang}").metric == "code_to_text"


def test_a_search_cell_end_to_end_through_the_mirror(mirror, in_tmp):
    result = run(compose(["task=codesearchnet_search_ruby", "model=tiny_bert", f"hub_mirror={mirror}",
                          "task.pool_size=3", *SMOKE]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    data = json.loads((in_tmp / "cell" / "result.json").read_text())["data"]
    assert data["splits"] == {"train": 24, "validation": 6, "test": 10}
    assert data["source"] == [f"{CSN}[ruby]"] and data["revision"] == {f"{CSN}[ruby]": "c5n0123"}
    gold = [json.loads(line) for line in (in_tmp / "cell/predictions/answers.jsonl").read_text().splitlines()]
    drawn = pools(10, 3, seed=0)  # 3 pools of the seeded shuffle of 10 rows; the 10th row is in none
    assert [g["index"] for g in gold] == [int(i) for p in drawn for i in p] and len(gold) == 9
    lines = (in_tmp / "cell/predictions/predictions.txt").read_text().splitlines()
    ranks = [int(line.split("\t")[1]) for line in lines]
    assert all(1 <= r <= 3 for r in ranks)
    assert result.metrics["mrr"] == pytest.approx(np.mean([1 / r for r in ranks]), abs=1e-12)
    low, high = result.confidence_intervals["mrr"]
    assert 1 / 3 <= low <= result.metrics["mrr"] <= high <= 1


def test_a_summarisation_cell_end_to_end_through_the_mirror(mirror, in_tmp):
    result = run(compose(["task=codesearchnet_summarize_ruby", "model=tiny_t5", f"hub_mirror={mirror}",
                          "task.max_target_length=8", *SMOKE]), in_tmp / "cell")
    assert result.status == "FINISHED", result.reason
    saved = json.loads((in_tmp / "cell" / "result.json").read_text())
    assert saved["data"]["splits"] == {"train": 24, "validation": 6, "test": 10}
    assert saved["metric"] == "code_to_text" and 0 <= saved["metrics"]["bleu"] <= 100
    gold = (in_tmp / "cell/predictions/answers.txt").read_text().splitlines()
    assert gold[0] == "0\t" + " ".join(ruby_rows()[30]["docstring_tokens"]) and len(gold) == 10
    assert saved["naive"] == "most_frequent" and "bleu" in saved["naive_metrics"]


def test_a_mirror_without_the_repo_or_the_config_is_an_error(tmp_path, in_tmp):
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = rf"hub_mirror={empty}: {CSN} is not in the mirror \(expected {empty}/{CSN}/README.md"
    with pytest.raises(DataError, match=expected):
        task_of("codesearchnet_search_ruby").data_plan(str(empty))
    result = run(compose(["task=codesearchnet_search_ruby", "model=tiny_bert", f"hub_mirror={empty}", *SMOKE]),
                 in_tmp / "cell")
    assert result.status == "FAILED" and CSN in result.reason and not result.data
    other = tmp_path / "other"
    rows = [hub_row(r, "test") for r in ruby_rows()[:3]]
    write_repo(other / CSN, {"go": {"train": rows, "test": rows}}, task_of("codesearchnet_search_ruby").schema)
    task = task_of("codesearchnet_search_ruby")
    with pytest.raises(DataError, match=rf"{CSN}\[ruby\]: cannot load .* as a hub dataset"):
        task.load_data(task.data_plan(str(other)))


# ---- a mirror from the hub's own files ------------------------------------------------------------------
def _archive(path, shards: dict[str, list[list[dict]]]) -> None:
    """data/ruby.zip as the hub serves it: ruby/final/jsonl/<split>/ruby_<split>_<n>.jsonl.gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for split, parts in shards.items():
            for n, rows in parts:
                body = "".join(json.dumps({**r, "partition": split}) + "\n" for r in rows).encode()
                buf = io.BytesIO()
                with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
                    gz.write(body)
                zf.writestr(f"ruby/final/jsonl/{split}/ruby_{split}_{n}.jsonl.gz", buf.getvalue())


def test_the_hubs_language_archive_becomes_a_mirror_the_task_loads(tmp_path):
    rows = ruby_rows()
    repo = tmp_path / "m" / CSN
    # train shards 2 and 10: the shard number orders them (a name sort would put 10 first)
    _archive(repo / "data/ruby.zip", {"train": [(10, rows[8:12]), (2, rows[:8])], "valid": [(0, rows[12:15])],
                                      "test": [(0, rows[15:20])]})
    assert make_mirror([str(repo)]) == 0
    task = task_of("codesearchnet_search_ruby")
    data = task.load_data(task.data_plan(str(tmp_path / "m")))
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 12, "validation": 3, "test": 5}
    assert data.splits["train"]["func_code_url"] == [r["url"] for r in rows[:12]]
    assert data.splits["validation"]["split_name"] == ["valid"] * 3
    assert data.splits["test"][0]["whole_func_string"] == rows[15]["original_string"]
    (repo / "code_search_net.py").write_text("# the hub's loading script\n")
    with pytest.raises(DataError, match=r"code_search_net\.py is a loading script"):
        make_mirror([str(repo)])


def test_the_hubs_parquet_conversion_gets_a_card(tmp_path):
    """refs/convert/parquet: <config>/<split>/0000.parquet and no card; the card is all it needs."""
    import shutil

    made = tmp_path / "made" / CSN
    write_repo(made, {"ruby": {s: [hub_row(r, s) for r in ruby_rows()[:4]] for s in ("train", "test")}},
               task_of("codesearchnet_search_ruby").schema)
    repo = tmp_path / "m" / CSN
    for split in ("train", "test"):
        (repo / "ruby" / split).mkdir(parents=True)
        shutil.copy(made / "ruby" / f"{split}-00000-of-00001.parquet", repo / "ruby" / split / "0000.parquet")
    assert make_mirror([str(repo)]) == 0
    task = task_of("codesearchnet_search_ruby", "task.source.splits.validation=null")
    data = task.load_data(task.data_plan(str(tmp_path / "m")))
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 4, "test": 4}
