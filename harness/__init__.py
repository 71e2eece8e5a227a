"""Fine-tune and evaluate code models on CodeXGLUE tasks; one Hydra cell = `harness.run.run(cfg)`.

Importing the package makes every Hugging Face library offline unless the user said otherwise:
an accidental hub call otherwise costs tens of seconds of retries before it fails.
"""
import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
