"""Where a result came from: commit, package versions, host. Recorded as tags on every run."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "evaluate",
            "hydra-core", "mlflow", "codebleu")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def tags(config_hash: str, data_digest: str | None = None) -> dict[str, str]:
    found = {"config_hash": config_hash, "git_commit": git_commit(), "host": platform.node(),
             "python": platform.python_version()}
    found.update({f"version.{k}": v for k, v in versions().items()})
    if data_digest:
        found["data_digest"] = data_digest
    return found


def trust_tags(model_cfg) -> dict[str, str]:
    """`harness.trust_remote_code`: whether the model's repository code ran (off unless the model
    YAML sets trust_remote_code: true)."""
    return {"harness.trust_remote_code": str(bool(model_cfg.get("trust_remote_code", False))).lower()}
