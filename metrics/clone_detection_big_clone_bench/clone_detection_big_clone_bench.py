"""evaluate module: CodeXGLUE clone_detection_big_clone_bench, delegating to metrics.compute (see metrics/hf_evaluate.py)."""
import evaluate

from metrics.hf_evaluate import metric_info, run


class CloneDetectionBigCloneBench(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info("clone_detection_big_clone_bench")

    def _compute(self, predictions, references, **kwargs):
        return run("clone_detection_big_clone_bench", predictions, references, **kwargs)
