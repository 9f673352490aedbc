"""How long a request's prompt is, before any backend has counted it: four characters of its text a token.
The gateway buckets requests by it and the emulator sizes its prefill by it, so both count alike."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["prompt_tokens"]


def prompt_tokens(payload: dict[str, Any]) -> int:
    """Estimated prompt tokens of a chat (`messages`), completion (`prompt`) or embeddings (`input`) request."""
    if "messages" in payload:
        text = json.dumps(payload.get("messages"))
    elif "prompt" in payload:
        text = str(payload.get("prompt", ""))
    else:
        text = str(payload.get("input", ""))
    return max(1, len(text) // 4)
