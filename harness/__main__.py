"""`python -m harness [overrides]`: one cell; `python -m harness -m a=x,y`: a grid (Hydra multirun)."""
from __future__ import annotations

import sys
from pathlib import Path

import harness  # noqa: F401 -- sets the offline defaults before any Hugging Face import
import hydra
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.config import register_resolvers
from harness.report import cell_summary
from harness.results import FAILED
from harness.run import run
from harness.sweep import parent_run_id

register_resolvers()
transformers.logging.set_verbosity_error()   # load reports and progress bars drown the summary
transformers.utils.logging.disable_progress_bar()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    result = run(cfg, out_dir, parent_run_id(hc.sweep.dir) if multirun else None)
    print(cell_summary(vars(result), cfg.tracker.get("uri"), str(out_dir)), flush=True)
    if result.status == FAILED and not multirun:  # in a grid, the sweep callback sets the exit code
        sys.exit(1)


if __name__ == "__main__":
    main()
