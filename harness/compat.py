"""Which method runs on which model family, task head and device: checked before any training."""
from __future__ import annotations

from omegaconf import DictConfig

from harness.env import Device


def method_unsupported(method: DictConfig, family: str, head: str, device: Device) -> str | None:
    """The reason a method cannot run here, or None. The rules are data in the method's YAML."""
    rules = method.get("supports") or {}
    if rules.get("families") and family not in rules.families:
        return f"method {method.name} supports model families {list(rules.families)}, not {family}"
    if rules.get("heads") and head not in rules.heads:
        return f"method {method.name} supports task heads {list(rules.heads)}, not {head}"
    if rules.get("devices") and device.type not in rules.devices:
        return f"method {method.name} needs a device in {list(rules.devices)}; this run has {device.type}"
    return None
