"""Client keys as logs, reports and error bodies may show them: never whole."""

from __future__ import annotations

import re

__all__ = ["mask_key", "redact"]

_KEY_IN_TEXT = re.compile(r"(client_?[kK]ey[=\":\s]+)([A-Za-z0-9]{4})[A-Za-z0-9]{8,}")


def mask_key(key: str) -> str:
    """All but the last 4 characters hidden (a key of 4 or fewer characters is hidden whole)."""
    return "****" + (key[-4:] if len(key) > 4 else "")


def redact(text: str) -> str:
    """Any client key inside free text (a log line, an error) cut to its first 4 characters."""
    return _KEY_IN_TEXT.sub(r"\1\2…", text)
