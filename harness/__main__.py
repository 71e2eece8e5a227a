"""`python -m harness [overrides]`: one cell; `python -m harness -m a=x,y`: a grid (Hydra multirun)."""
from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import harness  # noqa: F401 -- sets the offline defaults before any Hugging Face import

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional hub kernel is never reachable here
import hydra
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness import distributed
from harness.config import register_resolvers
from harness.report import cell_summary
from harness.results import FAILED
from harness.run import run
from harness.sweep import parent_run_id
from harness.validate import ConfigError, check, refused

register_resolvers()


def quiet() -> None:
    """Keep the console to what a person needs: load reports, progress bars and library deprecation
    notices drown the summary (they remain available with the libraries' own verbosity settings).
    Called in main too: the submitit and joblib launchers run main in processes that never import
    this module (they unpickle the function), so settings made at import would not reach them."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted", category=UserWarning)


quiet()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    quiet()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    try:
        check(cfg)  # before any model or data loads
    except ConfigError as err:
        print(err, file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(2)
        result = refused(cfg, str(err))  # in a grid the other cells still run; the sweep counts this one
        result.write(out_dir)
        print(cell_summary(vars(result), None, str(out_dir)), flush=True)
        return
    tracking_uri = cfg.tracker.get("uri")  # read before MLflow exports its resolved URI to the env
    result = run(cfg, out_dir, parent_run_id(hc.sweep.dir) if multirun else None)
    if distributed.is_main():  # the other processes of a multi-process cell record nothing
        print(cell_summary(vars(result), tracking_uri, str(out_dir)), flush=True)
    if result.status == FAILED and not multirun:  # in a grid, the sweep callback sets the exit code
        sys.exit(1)


if __name__ == "__main__":
    main()
