"""Client keys as logs and error bodies may show them: never whole."""

from __future__ import annotations

__all__ = ["mask_key"]


def mask_key(key: str) -> str:
    """All but the last 4 characters hidden (a key of 4 or fewer characters is hidden whole)."""
    return "****" + (key[-4:] if len(key) > 4 else "")
