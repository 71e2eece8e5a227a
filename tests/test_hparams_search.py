"""+hparams_search=equal_budget (harness/search.py): every method gets its own study of N trials over
its own search space, scored on validation; the best params are retrained on fixed seeds, on test."""
from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from mlflow import MlflowClient

from harness.config import config_hash
from harness.search import SearchError, _need_validation, search_space
from tests.conftest import ROOT, compose, harness_cmd, subprocess_env

SEARCH = ["+hparams_search=equal_budget", "task=defect", "model=tiny_bert", "trainer=smoke"]


def _search(cwd, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(subprocess_env(), PYTHONPATH=str(ROOT))  # this checkout's hydra_plugins and harness
    return subprocess.run(harness_cmd("-m", *SEARCH, *overrides), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def _cells(root) -> list[dict]:
    cells = []
    for path in sorted((root / "runs" / "multirun").rglob("result.json")):
        cells.append(json.loads(path.read_text()))
    return cells


def _studies(root) -> dict[str, optuna.Study]:
    storage = f"sqlite:///{root}/runs/optuna.db"
    return {s.study_name.split("-")[2]: optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)}


def test_every_method_has_its_own_space_and_hashes_are_unchanged():
    lora, ia3, prefix = (search_space(compose([f"method={m}"]), m) for m in ("lora", "ia3", "prefix"))
    assert set(lora) == {"lr", "r", "lora_alpha", "lora_dropout"} and lora["r"][0] == "peft.r"
    assert set(ia3) == {"lr"} and ia3["lr"][1].log and ia3["lr"][1].high == 0.1
    assert set(prefix) == {"lr", "num_virtual_tokens"}
    assert set(search_space(compose(["method=dora"]), "dora")) == set(lora)  # inherited from lora.yaml
    plain = config_hash(compose([]))
    assert config_hash(compose(["+hparams_search=equal_budget", "method.search.lr.distribution.low=1e-6"])) == plain
    assert config_hash(compose(["trainer.score_split=validation"])) != plain


def test_a_task_without_validation_is_refused(in_tmp):
    done = subprocess.run(harness_cmd("-m", "+hparams_search=equal_budget", "task=search_adv", "model=tiny_bert"),
                          cwd=in_tmp, env=dict(subprocess_env(), PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "task search_adv (search_adv x tiny_bert x lora): no validation split (it has train, test)" in done.stderr
    assert not list(in_tmp.rglob("result.json"))  # refused before any cell ran
    with pytest.raises(SearchError, match="task search_adv .*no validation split .*never on test"):
        _need_validation(compose(["task=search_adv"]), "search_adv")
    with pytest.raises(SearchError, match="method.search.lr.key=optimizer.nope"):
        search_space(compose(["method.search.lr.key=optimizer.nope"]), "lora")


@pytest.mark.slow
def test_equal_budget_search_then_final_cells_then_resume(in_tmp):
    done = _search(in_tmp, "method=lora,ia3", "hydra.sweeper.n_trials=2", "hparams_search.final_seeds=[0,1]")
    assert done.returncode == 0, done.stderr[-3000:]
    cells = _cells(in_tmp)
    studies = _studies(in_tmp)
    assert set(studies) == {"lora", "ia3"}
    for method, study in studies.items():
        trials = [c for c in cells if c["method"] == method and c["search"]["role"] == "trial"]
        finals = [c for c in cells if c["method"] == method and c["search"]["role"] == "final"]
        assert len(trials) == 2 and {c["data"]["score_split"] for c in trials} == {"validation"}
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert sorted(t.value for t in study.trials) == sorted(c["primary_value"] for c in trials)
        assert sorted(c["seed"] for c in finals) == [0, 1]
        assert {c["data"]["score_split"] for c in finals} == {"test"}
        best = finals[0]["search"]
        assert best["best_params"] == study.best_params and best["validation_score"] == study.best_value
        assert best["trials"] == 2 and best["search_seconds"] > 0
        tags = MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db").get_run(finals[0]["mlflow_run_id"]).data.tags
        assert tags["search.study"] == study.study_name and json.loads(tags["search.best_params"]) == study.best_params
    assert studies["ia3"].best_params.keys() == {"lr"}
    board = subprocess.run([sys.executable, "-m", "harness.leaderboard", "--runs-dir", "runs/multirun", "--format", "json"],
                           cwd=in_tmp, env=dict(subprocess_env(), PYTHONPATH=str(ROOT)), capture_output=True,
                           text=True, timeout=300)
    assert board.returncode == 0, board.stderr[-2000:]
    rows = {r["method"]: r["defect"] for r in json.loads(board.stdout)["rows"]}
    assert set(rows) == {"lora", "ia3"} and rows["lora"]["seeds"] == 2  # the trials are no entries
    assert rows["lora"]["search"]["best_params"] == studies["lora"].best_params
    assert set(rows["lora"]["search"]["spread"]) == {"min", "max", "std"}

    again = _search(in_tmp, "method=lora,ia3", "hydra.sweeper.n_trials=2", "hparams_search.final_seeds=[0,1]")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_studies(in_tmp)["lora"].trials) == 2
    assert len([c for c in _cells(in_tmp) if c["search"]["role"] == "trial"]) == 4  # no trial rerun
    from_mlflow = subprocess.run([sys.executable, "-m", "harness.leaderboard", "--format", "json"], cwd=in_tmp,
                                 env=dict(subprocess_env(), PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                                 timeout=300)  # the skipped finals leave their FINISHED runs' records as they were
    assert from_mlflow.returncode == 0, from_mlflow.stderr[-2000:]
    assert {r["method"]: r["defect"]["seeds"] for r in json.loads(from_mlflow.stdout)["rows"]} == {"lora": 2, "ia3": 2}

    more = _search(in_tmp, "method=ia3", "hydra.sweeper.n_trials=3", "hparams_search.final_seeds=[0,1]")
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(_studies(in_tmp)["ia3"].trials) == 3  # the same study, one new trial
    assert len([c for c in _cells(in_tmp) if c["method"] == "ia3" and c["search"]["role"] == "trial"]) == 3
    board = subprocess.run([sys.executable, "-m", "harness.leaderboard", "--runs-dir", "runs/multirun", "--format", "json"],
                           cwd=in_tmp, env=dict(subprocess_env(), PYTHONPATH=str(ROOT)), capture_output=True,
                           text=True, timeout=300)
    ia3 = {r["method"]: r["defect"] for r in json.loads(board.stdout)["rows"]}["ia3"]
    assert ia3["search"]["trials"] == 3 and ia3["seeds"] == 2  # the latest search's finals only
    assert ia3["search"]["best_params"] == _studies(in_tmp)["ia3"].best_params


def test_failed_trials_are_recorded_and_the_search_goes_on(in_tmp):
    bad = ["method=lora", "hydra.sweeper.n_trials=2", "hparams_search.final_seeds=[0]",
           "method.search.lora_dropout.distribution.low=1.5", "method.search.lora_dropout.distribution.high=2.0"]
    done = _search(in_tmp, *bad)
    assert done.returncode == 1  # the sweep reports its FAILED cells
    study = _studies(in_tmp)["lora"]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2  # the second ran after the first failed
    assert all("dropout" in t.user_attrs["reason"] for t in study.trials)
    cells = _cells(in_tmp)
    assert [c["search"]["state"] for c in cells] == ["FAIL", "FAIL"]  # and no final cells
    tags = MlflowClient(f"sqlite:///{in_tmp}/runs/mlflow.db").get_run(cells[0]["mlflow_run_id"]).data.tags
    assert tags["search.state"] == "FAIL"
    assert "no trial finished" in done.stdout


def test_a_time_budget_stops_asking_for_trials(in_tmp):
    done = _search(in_tmp, "method=ia3", "hydra.sweeper.n_trials=5", "hparams_search.budget_seconds=0.000001",
                   "hparams_search.final_seeds=[0]")
    assert done.returncode == 0, done.stderr[-3000:]
    study = _studies(in_tmp)["ia3"]
    assert len(study.trials) == 1  # one trial trains longer than the budget: no second one is asked for
    trained = study.trials[0].user_attrs["train_seconds"]
    final = [c for c in _cells(in_tmp) if c["search"]["role"] == "final"]
    # the budget counts training time; the search's cost is the trials' whole wall time (load, train, score)
    assert len(final) == 1 and 0 < trained < final[0]["search"]["search_seconds"]
