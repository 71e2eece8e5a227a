"""Fine-tune and evaluate code models on CodeXGLUE tasks; one Hydra cell = `harness.run.run(cfg)`.

Importing the package makes every Hugging Face library offline unless the user said otherwise:
an accidental hub call otherwise costs tens of seconds of retries before it fails.
"""
import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `datasets` reports every Arrow write with a progress bar and warns about dataset-card details; the
# harness prints one line per data step instead (set these variables to see them again).
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DATASETS_VERBOSITY", "error")
