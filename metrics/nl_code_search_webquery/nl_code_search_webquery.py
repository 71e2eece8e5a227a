"""evaluate module: CodeXGLUE nl_code_search_webquery, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class NlCodeSearchWebquery(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("nl_code_search_webquery")

    def _compute(self, predictions, references, **kwargs):
        return run("nl_code_search_webquery", predictions, references, **kwargs)
