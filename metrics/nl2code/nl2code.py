"""evaluate module: nl2code (AixBench), delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class NL2Code(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("nl2code")

    def _compute(self, predictions, references, **kwargs):
        return run("nl2code", predictions, references, **kwargs)
