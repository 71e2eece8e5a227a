"""evaluate module: CodeXGLUE code_completion_line, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CodeCompletionLine(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("code_completion_line")

    def _compute(self, predictions, references, **kwargs):
        return run("code_completion_line", predictions, references, **kwargs)
