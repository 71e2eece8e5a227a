"""Hydra accepts plugins only from the hydra_plugins namespace: this is harness.search's sweeper
(`hydra/sweeper=equal_budget`, chosen by +hparams_search=equal_budget). It imports optuna only
when a search runs: Hydra imports every plugin module on every launch."""
from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class EqualBudgetSweeper(Sweeper):
    def __init__(self, **kwargs: Any) -> None:
        from harness.search import Search

        self.search = Search(**kwargs)

    def setup(self, **kwargs: Any) -> None:
        self.search.setup(**kwargs)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
