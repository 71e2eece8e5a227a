"""evaluate module: CodeXGLUE defect_detection, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class DefectDetection(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("defect_detection")

    def _compute(self, predictions, references, **kwargs):
        return run("defect_detection", predictions, references, **kwargs)
