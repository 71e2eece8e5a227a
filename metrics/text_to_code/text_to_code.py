"""evaluate module: CodeXGLUE text_to_code, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class TextToCode(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("text_to_code")

    def _compute(self, predictions, references, **kwargs):
        return run("text_to_code", predictions, references, **kwargs)
