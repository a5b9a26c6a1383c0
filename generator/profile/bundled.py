"""Finding a profile by path or by the name of one bundled with the package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["BUNDLED", "DEFAULT_PROFILE", "resolve_profile"]

# Package data, so an installed wheel finds them too; a real directory (no zip installs).
BUNDLED = Path(str(files("generator") / "defaults"))
DEFAULT_PROFILE = BUNDLED / "retail-ireland.yaml"


def resolve_profile(name_or_path: str | Path) -> Path:
    """A path as given if it exists; otherwise a bundled profile of that name."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    bundled = BUNDLED / f"{name_or_path}.yaml"
    return bundled if bundled.exists() else path
