"""Generation tasks (refinement, translation, CONCODE, summarisation, line completion).

seq2seq models take the source and learn the target; decoders see `source + prompt_suffix` and
learn the target after it, with the prompt masked out of the loss (labels -100). Prediction is
batched generation with the KV cache (left-padded prompts for decoders), greedy unless num_beams>1.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tasks.base import Task, column
from tasks.encoding import IGNORE, bos, iter_rows, plain_ids, render, template_fields, token_ids, truncate
from tasks.official import one_line, write_official


@dataclass
class GenerationTask(Task):
    source_template: str = "{source}"
    target_template: str = "{target}"
    reference_template: str | None = None     # the gold text, when it differs from the trained target
    prompt_suffix: str = "\n"                 # decoders: what separates the source from the target
    truncation_side: str = "right"            # which end of a long source to drop
    num_beams: int = 1
    stop: Sequence[str] = field(default_factory=tuple)  # cut a prediction at the first of these
    families: tuple[str, ...] = ("decoder", "seq2seq")

    def head(self, family: str) -> str:
        return "seq2seq_lm" if family == "seq2seq" else "causal_lm"

    def train_shape(self, family: str, max_length: int) -> dict[str, int]:
        if family == "seq2seq":
            return {"input": max_length, "target": self.max_target_length}
        return {"input": max_length + self.max_target_length}  # the prompt, then the target

    def encode(self, rows: list[dict], tokenizer, family: str, max_length: int,
               for_training: bool = True) -> list[dict]:
        sources = [render(self.source_template, r) for r in rows]
        targets = [render(self.target_template, r) for r in rows]
        if family == "seq2seq":
            return self._encode_seq2seq(sources, targets, tokenizer, max_length, for_training)
        return self._encode_decoder(sources, targets, tokenizer, max_length, for_training)

    def _encode_seq2seq(self, sources, targets, tokenizer, max_length, for_training) -> list[dict]:
        tokenizer.truncation_side = self.truncation_side
        inputs = token_ids(tokenizer, sources, max_length=max_length)
        tokenizer.truncation_side = "right"
        if not for_training:
            return [{"input_ids": ids} for ids in inputs]
        labels = tokenizer(text_target=targets, truncation=True, max_length=self.max_target_length)["input_ids"]
        return [{"input_ids": x, "labels": y} for x, y in zip(inputs, labels)]

    def _encode_decoder(self, sources, targets, tokenizer, max_length, for_training) -> list[dict]:
        suffix = plain_ids(tokenizer, [self.prompt_suffix])[0] if self.prompt_suffix else []
        budget = max(1, max_length - len(suffix) - len(bos(tokenizer)))
        prompts = [bos(tokenizer) + truncate(ids, budget, self.truncation_side) + suffix
                   for ids in plain_ids(tokenizer, sources)]
        if not for_training:
            return [{"input_ids": p} for p in prompts]
        out = []
        for prompt, tgt in zip(prompts, plain_ids(tokenizer, targets)):
            tgt = truncate(tgt, self.max_target_length - 1) + [tokenizer.eos_token_id]
            out.append({"input_ids": prompt + tgt, "labels": [IGNORE] * len(prompt) + tgt})
        return out

    def predict(self, model, tokenizer, features: list[dict], collate, trainer, device) -> list[str]:
        from harness.predict import Sequences, generate

        decoder_only = not getattr(model.config, "is_encoder_decoder", False)
        new_ids = generate(model, Sequences(features), tokenizer.pad_token_id,
                           trainer.eval_batch_size, device, decoder_only,
                           max_new_tokens=self.max_target_length, num_beams=self.num_beams,
                           do_sample=False, eos_token_id=tokenizer.eos_token_id,
                           stop_strings=list(self.stop) or None, tokenizer=tokenizer,
                           cache=trainer.get("generation_cache", "static"))
        return [self.postprocess(t) for t in tokenizer.batch_decode(new_ids, skip_special_tokens=True)]

    def postprocess(self, text: str) -> str:
        """Cut at the first stop string; one line, as the official prediction files hold it."""
        for stop in self.stop:
            text = text.split(stop, 1)[0]
        return one_line(text)

    def naive_predictions(self, train_rows, test_rows) -> list[str] | None:
        """copy_source: the input itself (CodeXGLUE's "naive copy" of refinement and translation);
        most_frequent: the train split's most frequent target, for every test row."""
        if self.naive == "copy_source":
            return [one_line(render(self.source_template, r)) for r in iter_rows(test_rows, template_fields(self.source_template))]
        if self.naive == "most_frequent":
            top = Counter(self.references(train_rows)).most_common(1)[0][0]
            return [top] * len(test_rows)
        return None

    def references(self, rows) -> list[str]:
        template = self.reference_template or self.target_template
        return [one_line(render(template, r)) for r in iter_rows(rows, template_fields(template))]

    def write_predictions(self, rows, predictions: list[str], out_dir: Path) -> dict[str, Path]:
        ids = column(rows, self.id_field) if self.id_field else range(len(predictions))
        return write_official(self.metric, ids, self.references(rows), predictions, out_dir)
