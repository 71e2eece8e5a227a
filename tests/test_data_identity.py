"""What a cell read is part of its key: a changed file under task.data_dir, another hub revision or
another source makes a new cell, never a SKIPPED "already FINISHED" on old data; the same data skips.
The identity is cheap: file names, sizes and mtimes, or the revision the download recorded."""
from __future__ import annotations

import json
import os

from conftest import compose
from harness.config import config_hash
from harness.models import with_hub_mirror
from harness.run import run
from hubfix import write_repo
from tasks import DATA_DIR

BCB = "google/code_x_glue_cc_clone_detection_big_clone_bench"
CELL = ["model=tiny_bert", "trainer=smoke", "tracker=mlflow"]


def pool(n: int) -> list[dict]:
    lines = (DATA_DIR / "clone_detection_big_clone_bench/pool.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines[:n]]


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_a_changed_file_under_data_dir_makes_a_new_cell(in_tmp):
    data = in_tmp / "data"
    data.mkdir()
    rows = pool(60)
    write_jsonl(data / "train.jsonl", rows[:40])
    write_jsonl(data / "test.jsonl", rows[40:])
    cell = [*CELL, f"task.data_dir={data}", "seed=21"]
    first = run(compose(cell), in_tmp / "a")
    assert first.status == "FINISHED", first.reason
    assert run(compose(cell), in_tmp / "b").status == "SKIPPED"       # same data: skipped
    write_jsonl(data / "train.jsonl", rows[:41])                     # one more row
    grown = run(compose(cell), in_tmp / "c")
    assert grown.status == "FINISHED" and grown.config_hash != first.config_hash
    test = data / "test.jsonl"
    os.utime(test, ns=(test.stat().st_atime_ns, test.stat().st_mtime_ns + 10**9))  # rewritten, same size
    touched = run(compose(cell), in_tmp / "d")
    assert touched.status == "FINISHED" and touched.config_hash not in (first.config_hash, grown.config_hash)


def test_another_hub_revision_or_source_makes_a_new_cell(in_tmp):
    rows = pool(120)
    mirror = in_tmp / "mirror"
    repo = write_repo(mirror / BCB, {"default": {"train": rows[:60], "validation": rows[60:80], "test": rows[80:]}},
                      {"id": "int", "id1": "int", "id2": "int", "func1": "str", "func2": "str", "label": "bool"},
                      commit="aaaa1111")
    cell = [*CELL, f"hub_mirror={mirror}", "seed=22"]
    first = run(compose(cell), in_tmp / "a")
    assert first.status == "FINISHED", first.reason
    assert first.data["revision"] == {f"{BCB}[default]": "aaaa1111"}
    assert run(compose(cell), in_tmp / "b").status == "SKIPPED"
    (repo / ".cache/huggingface/download/README.md.metadata").write_text("bbbb2222\netag\n0\n")  # a new download
    newer = run(compose(cell), in_tmp / "c")
    assert newer.status == "FINISHED" and newer.config_hash != first.config_hash
    assert newer.data["revision"] == {f"{BCB}[default]": "bbbb2222"}
    shipped = run(compose([*CELL, "seed=22"]), in_tmp / "d")  # the same cell on the shipped rows
    assert shipped.status == "FINISHED" and shipped.config_hash not in (first.config_hash, newer.config_hash)


def test_other_mirrored_model_weights_make_another_key(tmp_path):
    model_dir = tmp_path / "microsoft" / "codebert-base"
    meta = model_dir / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    (meta / "config.json.metadata").write_text("cafe0001\netag\n0\n")
    cfg = compose(["model=codebert", f"hub_mirror={tmp_path}"])
    local, weights = with_hub_mirror(cfg)
    assert local.model.path == str(model_dir) and weights == "cafe0001"
    (meta / "config.json.metadata").write_text("cafe0002\netag\n0\n")
    assert with_hub_mirror(cfg)[1] == "cafe0002"
    assert config_hash(cfg, json.dumps(["d", "cafe0001"])) != config_hash(cfg, json.dumps(["d", "cafe0002"]))
