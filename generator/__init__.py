"""cdpsim: a simulator of a Sitecore CDP tenant's traffic (package `generator`)."""

from __future__ import annotations

from typing import Any

# The one place the version lives; pyproject.toml reads it (and importlib.metadata is slow).
__version__ = "0.1.0"

__all__ = ["__version__", "generate", "iter_events", "load_profile", "open_dataset"]

# Imported on first use so `import generator` stays cheap (no numpy, no YAML parser).
_LAZY = {
    "generate": "generator.api",
    "iter_events": "generator.api",
    "load_profile": "generator.profile",
    "open_dataset": "generator.dataset.reader",
}


def __getattr__(name: str) -> Any:
    """The public API's functions, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'generator' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
