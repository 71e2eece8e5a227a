"""Step hooks that methods name in their YAML (`step_hooks:`); the loop calls hook(model, step, total)
after each optimizer step, before the gradients are cleared."""
from __future__ import annotations

import torch


class AdaLoraAllocator:
    """AdaLoRA's rank reallocation. The YAML gives tinit/tfinal for its own total_step (100, say);
    on the first step they are rescaled to the run's real number of steps, so one schedule serves
    smoke runs and full runs alike."""

    def __init__(self) -> None:
        self._scaled = False

    def __call__(self, model: torch.nn.Module, step: int, total: int) -> None:
        config = model.peft_config[model.active_adapter]
        if not self._scaled:
            ratio = total / config.total_step
            config.tinit = int(config.tinit * ratio)
            config.tfinal = max(1, int(config.tfinal * ratio))
            config.total_step = total
            if config.tinit >= total - config.tfinal:
                raise ValueError(f"AdaLoRA: {total} steps leave no budgeting phase after tinit={config.tinit} "
                                 f"and tfinal={config.tfinal}; train longer or lower method.peft.tinit/tfinal")
            self._scaled = True
        model.base_model.update_and_allocate(step)
