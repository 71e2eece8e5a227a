"""Your own code as data: a directory of source files (a company repository, say).

Files are ordered by a stable hash of their relative path and cut at the split fractions, so a
file is never in two splits, the split is the same on every machine, and even a small directory
keeps at least one held-out file. Training is continued
pretraining (causal LM over the train files). Evaluation on the held-out test files is token-level
completion (teacher-forced, in the file's whitespace-token space) and line-level completion (the
file up to a line, with that line's indentation, is the prompt; the model generates to the end of
the line; exact match and edit similarity as in CodeXGLUE's line-level evaluator).
"""
from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import metrics
from harness.env import cache_dir
from tasks.completion import TokenCompletionTask
from tasks.encoding import bos, iter_rows, plain_ids, truncate
from tasks.official import one_line, write_official
from tasks.schema import DataError, arrow_features
from tasks.sources import Origin, Plan, file_stamp
from tasks.splits import split_by_rank

LINE_METRIC = "code_completion_line"


@dataclass
class CodeCorpusTask(TokenCompletionTask):
    root: str | None = None                  # None: the Python standard library of this machine
    include: Sequence[str] = ("**/*.py",)    # glob patterns, relative to the root
    exclude: Sequence[str] = ()
    max_files: int | None = None             # the first N matching files (sorted by path)
    fractions: dict = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    lines_per_file: int = 4                  # line-completion examples per held-out file
    text_template: str = "{text}"
    # ---- a streamed corpus (tasks/stream.py): set `stream` (presets code_corpus_github / _stack / _repos)
    stream: dict | None = None               # {hub, revision, data_files, <field>_field, extensions}
    languages: Sequence[str] = ()            # keep these languages only (empty: every language)
    licenses: Sequence[str] = ()             # keep documents under one of these licences (empty: any)
    min_file_bytes: int = 1
    max_file_bytes: int = 1_000_000
    dedup: dict = field(default_factory=lambda: {"exact": True, "near": True, "threshold": 0.85,
                                                 "num_perm": 128, "shingle": 5})
    max_train_tokens: int | None = None      # the token budget: the stream stops there
    held_out: dict = field(default_factory=lambda: {"validation": 0.01, "test": 0.01, "max_documents": 64})
    shard_documents: int = 5000              # training documents per shard (a resume point)

    # ---- data: a directory of source files (or JSONL rows {path, text}) ---------------------
    def _root(self) -> Path:
        return Path(self.data_dir or self.root or sysconfig.get_paths()["stdlib"]).expanduser()

    def data_plan(self, hub_mirror: str | None = None):
        if self.stream is not None:
            from tasks.stream_sources import stream_plan

            return stream_plan(self, hub_mirror)
        root = self._root()
        if self.data_dir and any((root / f"{s}.jsonl").exists() for s in ("train", "test")):
            return super().data_plan(hub_mirror)   # JSONL rows {path, text} work too
        files = self._files(root)
        origin = Origin(str(root.resolve()), root, stamp=file_stamp(files, root))
        specs = {name: {"from": name, "origin": "files"} for name in self.fractions}
        return Plan("files", f"source files under {root} ({len(files)} matching {list(self.include)})",
                    specs, {"files": origin}, comparable=False,
                    why_not_comparable="your own code: there is no published result to compare with")

    def load_data(self, plan, tokenizer=None):
        if plan.kind == "stream":
            return self._load_stream(plan, tokenizer)
        if plan.kind != "files":
            return super().load_data(plan)
        from tasks.loading import TaskData, arrow_from_generator

        root = plan.origins["files"].path
        settings = json.dumps([str(root), [p.relative_to(root).as_posix() for p in self._files(root)]])
        key = hashlib.sha256((settings + plan.identity).encode()).hexdigest()[:16]
        rows = arrow_from_generator(_read_files, arrow_features(self.schema), settings, key)  # read (and checked) once
        try:
            chosen = split_by_rank([{"path": p, "i": i} for i, p in enumerate(rows["path"])], "path", self.fractions)
        except ValueError as err:
            raise DataError(f"task {self.name}: {err} (files)") from None
        return TaskData({name: rows.select([r["i"] for r in part]) for name, part in chosen.items()}, plan)

    def _load_stream(self, plan, tokenizer):
        """The streamed corpus through tasks/stream.py, built once per data, settings and tokenizer
        (the budget counts its tokens), resumed where a killed build stopped."""
        from harness.features import tokenizer_digest
        from tasks import stream
        from tasks.loading import TaskData

        if tokenizer is None:
            raise DataError(f"task {self.name}: a streamed corpus needs the model's tokenizer (its token budget)")
        settings = {k: getattr(self, k) for k in ("stream", "languages", "licenses", "min_file_bytes",
                                                  "max_file_bytes", "dedup", "max_train_tokens", "held_out")}
        key = hashlib.sha256(json.dumps([plan.identity, settings, tokenizer_digest(tokenizer)], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        folder = cache_dir("streams") / f"{self.name}-{key}"
        record = self._built_stream(plan, tokenizer, folder, settings)
        found = stream.splits(folder, record["shards"])
        for split in ("train", "test"):
            if len(found[split]) == 0:
                raise DataError(f"task {self.name}: the stream gave no {split} documents ({record['documents_seen']:,} "
                                f"read, dropped {record['dropped']}); widen the filters, raise task.max_train_tokens "
                                "or task.held_out.test")
        print(f"[harness] stream: {record['documents_seen']:,} documents read, {record['train_tokens']:,} training "
              f"tokens in {record['documents_kept'].get('train', 0):,} documents; dropped {record['dropped']}", flush=True)
        return TaskData(found, plan, plan.documents, details={"stream": {k: v for k, v in record.items() if k != "memory"}})

    def _built_stream(self, plan, tokenizer, folder: Path, settings: dict) -> dict:
        """The record of the finished build in `folder`, built first where it is missing: by one
        process at a time (the folder's lock), so processes sharing the cache never write the same
        shards at once; record.json, written whole and last, marks it finished."""
        from harness.files import atomic, locked
        from tasks import stream

        done = folder / "record.json"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with locked(done):
                if not done.exists():  # another process may have finished it while this one waited
                    state = stream.StreamBuild(self, plan, tokenizer, folder).run()
                    with atomic(done) as tmp:
                        tmp.write_text(json.dumps(self._stream_record(plan, settings, state), indent=1, default=str))
        return json.loads(done.read_text())

    def _stream_record(self, plan, settings: dict, state: dict) -> dict:
        origin = plan.origins["stream"]
        return {"dataset": origin.name, "revision": origin.revision, "data_files": (self.stream or {}).get(
            "data_files"), "filters": {k: settings[k] for k in ("languages", "licenses", "min_file_bytes",
                                                                 "max_file_bytes")},
                "dedup": dict(self.dedup), "held_out": dict(self.held_out), "budget": self.max_train_tokens,
                "budget_reached": state["budget_reached"], "documents_seen": state["seen"],
                "documents_kept": dict(state["kept"]), "dropped": dict(state["dropped"]),
                "train_tokens": state["tokens"], "shards": state["shards"], "memory": state["memory"]}

    def encode_documents(self, rows: list[dict], tokenizer, family: str, max_length: int) -> list[dict]:
        """Streamed training documents arrive tokenised (their ids counted the budget): packed as
        they are; files read from a folder are tokenised here."""
        from tasks.encoding import pack

        if rows and "input_ids" in rows[0]:
            return pack([bos(tokenizer) + list(r["input_ids"]) for r in rows], max_length)
        return super().encode_documents(rows, tokenizer, family, max_length)

    def _files(self, root: Path) -> list[Path]:
        if not root.is_dir():
            raise DataError(f"task {self.name}: {root} is not a directory; expected a folder of source files")
        paths = sorted({p for pattern in self.include for p in root.glob(pattern) if p.is_file()})
        paths = [p for p in paths if not any(p.relative_to(root).match(x) for x in self.exclude)]
        paths = [p for p in paths[: self.max_files] if p.stat().st_size > 0]
        if not paths:
            raise DataError(f"task {self.name}: no non-empty file under {root} matches {list(self.include)}")
        return paths

    # ---- line-level examples ------------------------------------------------------------------
    def line_examples(self, text: str) -> list[tuple[str, str]]:
        """(prompt, gold line) pairs at evenly spaced non-blank lines (never the first)."""
        lines = text.split("\n")
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        candidates = [i for i, line in enumerate(lines) if i > 0 and line.strip()]
        n = min(self.lines_per_file, len(candidates))
        chosen = [candidates[k * len(candidates) // n] for k in range(n)]
        out = []
        for i in chosen:
            indent = len(lines[i]) - len(lines[i].lstrip())
            out.append((text[: starts[i] + indent], lines[i].strip()))
        return out

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        out = super().encode(rows, tokenizer, family, max_length, for_training)
        if for_training:
            return out
        budget = max(1, max_length - self.max_target_length - len(bos(tokenizer)))
        prompts = [[bos(tokenizer) + truncate(plain_ids(tokenizer, [prompt])[0], budget, "left")
                    for prompt, _ in self.line_examples(row["text"])] for row in rows]
        firsts = iter(prompts)
        return [{**f, "line_prompts": next(firsts) if f["start"] == 0 else []} for f in out]

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[dict]:
        from harness.predict import generate

        from tasks.base import column

        tokens = super().predict(model, tokenizer, features, collate, trainer, device)
        per_row = [p for p, start in zip(column(features, "line_prompts"), column(features, "start")) if start == 0]
        flat = [(r, ids) for r, prompts in enumerate(per_row) for ids in prompts]
        new_ids = generate(model, [ids for _, ids in flat], tokenizer.pad_token_id,
                           trainer.eval_batch_size, device, True, max_new_tokens=self.max_target_length,
                           do_sample=False, eos_token_id=tokenizer.eos_token_id, stop_strings=["\n"],
                           tokenizer=tokenizer, cache=trainer.get("generation_cache", "static"))
        lines: list[list[str]] = [[] for _ in tokens]
        for (r, _), text in zip(flat, tokenizer.batch_decode(new_ids, skip_special_tokens=True)):
            lines[r].append(one_line(text.split("\n", 1)[0]))
        return [{"tokens": t, "lines": ls} for t, ls in zip(tokens, lines)]

    # ---- scoring: both metrics -----------------------------------------------------------------
    def _pairs(self, rows: list[dict], predictions: list[dict]) -> dict[str, tuple[list, list]]:
        gold_lines = [gt for row in iter_rows(rows, ["text"]) for _, gt in self.line_examples(row["text"])]
        return {self.metric: (super().references(rows), [p["tokens"] for p in predictions]),
                LINE_METRIC: (gold_lines, [line for p in predictions for line in p["lines"]])}

    def score(self, rows: list[dict], predictions: list[dict]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, (refs, preds) in self._pairs(rows, predictions).items():
            out.update(metrics.compute(name, refs, preds))
        return out

    def confidence_intervals(self, rows: list[dict], predictions: list[dict], n_resamples: int,
                             seed: int) -> dict[str, list[float]]:
        from metrics.bootstrap import confidence_interval

        out: dict[str, list[float]] = {}
        for name, (refs, preds) in self._pairs(rows, predictions).items():
            found = confidence_interval(name, refs, preds, n_resamples=n_resamples, seed=seed)
            out.update({k: [float(lo), float(hi)] for k, (lo, hi) in found.items()})
        return out

    def write_predictions(self, rows: list[dict], predictions: list[dict], out_dir: Path) -> dict[str, Path]:
        """Official files for both evaluators: token_{answers,predictions}.txt and
        line_answers.jsonl + line_predictions.txt; `gold` and `predictions` name the primary
        metric's pair (token level), as every task's do."""
        files = {}
        for name, stem in ((self.metric, "token_"), (LINE_METRIC, "line_")):
            refs, preds = self._pairs(rows, predictions)[name]
            files.update(write_official(name, range(len(refs)), refs, preds, out_dir, stem))
        return {**files, "gold": files["token_gold"], "predictions": files["token_predictions"]}


def _read_files(settings: str):
    root, paths = json.loads(settings)
    for rel in paths:
        path = Path(root) / rel
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: bytes at offset {err.start} are not UTF-8; expected UTF-8 "
                            "source files (exclude this file with task.exclude)") from None
        if text.strip():
            yield {"path": rel, "text": text}
