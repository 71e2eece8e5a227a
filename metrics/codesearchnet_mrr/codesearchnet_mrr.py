"""evaluate module: the CodeSearchNet challenge's pool MRR, delegating to metrics.compute (see metrics/hf_evaluate.py).

references: each ranked item's pool size; predictions: the 1-based rank of its partner in its pool
(metrics/codesearchnet.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CodesearchnetMrr(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("codesearchnet_mrr")

    def _compute(self, predictions, references, **kwargs):
        return run("codesearchnet_mrr", predictions, references, **kwargs)
