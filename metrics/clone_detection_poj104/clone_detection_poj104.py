"""evaluate module: CodeXGLUE clone_detection_poj104, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CloneDetectionPoj104(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("clone_detection_poj104")

    def _compute(self, predictions, references, **kwargs):
        return run("clone_detection_poj104", predictions, references, **kwargs)
