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

import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import metrics
from tasks.completion import TokenCompletionTask
from tasks.encoding import bos, plain_ids, truncate
from tasks.official import one_line, write_official
from tasks.schema import DataError
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

    # ---- data: a directory instead of JSONL --------------------------------------------------
    def _from_dir(self, root: Path) -> dict[str, list[dict]]:
        if any((root / f"{s}.jsonl").exists() for s in ("train", "test")):
            return super()._from_dir(root)   # JSONL rows {path, text} work too
        return self._split(self._files(root))

    def _shipped(self) -> dict[str, list[dict]]:
        return self._split(self._files(Path(self.root or sysconfig.get_paths()["stdlib"])))

    def _files(self, root: Path) -> list[dict]:
        if not root.is_dir():
            raise DataError(f"task {self.name}: {root} is not a directory; expected a folder of source files")
        paths = sorted({p for pattern in self.include for p in root.glob(pattern) if p.is_file()})
        paths = [p for p in paths if not any(p.relative_to(root).match(x) for x in self.exclude)]
        rows = []
        for path in paths[: self.max_files]:
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: bytes at offset {err.start} are not UTF-8; expected UTF-8 "
                                "source files (exclude this file with task.exclude)") from None
            if text.strip():
                rows.append({"path": path.relative_to(root).as_posix(), "text": text})
        if not rows:
            raise DataError(f"task {self.name}: no non-empty file under {root} matches {list(self.include)}")
        return rows

    def _split(self, rows: list[dict]) -> dict[str, list[dict]]:
        try:
            return split_by_rank(rows, "path", self.fractions)
        except ValueError as err:
            raise DataError(f"task {self.name}: {err} (files)") from None

    def source_uri(self) -> str:
        return str(Path(self.data_dir or self.root or sysconfig.get_paths()["stdlib"]).expanduser().resolve())

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
        for r, row in enumerate(rows):
            for prompt, _ in self.line_examples(row["text"]):
                ids = bos(tokenizer) + truncate(plain_ids(tokenizer, [prompt])[0], budget, "left")
                out.append({"line_prompt": ids, "line_row": r})
        return out

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[dict]:
        from harness.predict import generate

        tokens = super().predict(model, tokenizer, features, collate, trainer, device)
        prompts = [f for f in features if "line_prompt" in f]
        new_ids = generate(model, [f["line_prompt"] for f in prompts], tokenizer.pad_token_id,
                           trainer.eval_batch_size, device, True, max_new_tokens=self.max_target_length,
                           do_sample=False, eos_token_id=tokenizer.eos_token_id)
        lines: list[list[str]] = [[] for _ in tokens]
        for f, text in zip(prompts, tokenizer.batch_decode(new_ids, skip_special_tokens=True)):
            lines[f["line_row"]].append(one_line(text.split("\n", 1)[0]))
        return [{"tokens": t, "lines": ls} for t, ls in zip(tokens, lines)]

    # ---- scoring: both metrics -----------------------------------------------------------------
    def _pairs(self, rows: list[dict], predictions: list[dict]) -> dict[str, tuple[list, list]]:
        gold_lines = [gt for row in rows for _, gt in self.line_examples(row["text"])]
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
        line_answers.jsonl + line_predictions.txt."""
        files = {}
        for name, stem in ((self.metric, "token_"), (LINE_METRIC, "line_")):
            refs, preds = self._pairs(rows, predictions)[name]
            files.update(write_official(name, range(len(refs)), refs, preds, out_dir, stem))
        return files
