"""evaluate module: CodeXGLUE code_completion_token, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CodeCompletionToken(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("code_completion_token")

    def _compute(self, predictions, references, **kwargs):
        return run("code_completion_token", predictions, references, **kwargs)
