"""evaluate module: CodeXGLUE code_to_text, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CodeToText(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("code_to_text")

    def _compute(self, predictions, references, **kwargs):
        return run("code_to_text", predictions, references, **kwargs)
