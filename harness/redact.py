"""Secrets are never recorded. The values of environment variables named like *TOKEN*, *KEY*,
*SECRET* or *PASSWORD*, and the Hugging Face token (HF_TOKEN or the file `hf auth login` writes),
are replaced by *** wherever they appear (whole or inside a longer value) in what the harness writes:
params, tags, the resolved config, result.json, tracebacks. So is the password of a URL
(`http://user:PASSWORD@host`, `postgresql://user:PASSWORD@host/db`), whatever its length.

Values shorter than MIN_CHARS are not treated as secrets: they cannot be told apart from ordinary
values (TOKENIZERS_PARALLELISM=false would otherwise mask every `false`).
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD", re.IGNORECASE)
MIN_CHARS = 6
MASK = "***"
URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")  # scheme://user:password@host


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value in the environment, longest first (a secret inside another is masked whole)."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_CHARS}
    found.add(_hf_token() or "")
    return sorted((v for v in found if len(v) >= MIN_CHARS), key=len, reverse=True)


def _hf_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 -- no token, or no readable token file
        return None


def redact(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """`value` with every secret replaced by ***: strings, and dicts, lists and tuples of them (keys
    included); a number or other value whose text holds a secret becomes *** as a whole."""
    secrets = secret_values() if secrets is None else list(secrets)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return URL_PASSWORD.sub(rf"\1:{MASK}@", value) if "://" in value else value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets) for v in value)
    if value is not None and any(s in str(value) for s in secrets):
        return MASK
    return value
