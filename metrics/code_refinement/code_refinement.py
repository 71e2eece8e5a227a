"""evaluate module: CodeXGLUE code_refinement, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CodeRefinement(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("code_refinement")

    def _compute(self, predictions, references, **kwargs):
        return run("code_refinement", predictions, references, **kwargs)
