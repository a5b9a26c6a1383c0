"""Finding a profile by path or by the name of one bundled with the package."""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path

from generator.errors import ProfileError

__all__ = ["BUNDLED", "DEFAULT_PROFILE", "bundled_names", "resolve_profile"]

# Package data, so an installed wheel finds them too; a real directory (no zip installs).
BUNDLED = Path(str(files("generator") / "defaults"))
DEFAULT_PROFILE = BUNDLED / "retail-ireland.yaml"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED.glob("*.yaml"))


def resolve_profile(name_or_path: str | Path) -> Path:
    """A path as given if it exists; otherwise a bundled profile of that name. A bare name that
    is neither raises ProfileError listing the bundled names, the nearest first."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    bundled = BUNDLED / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    if len(path.parts) > 1:
        return path  # a path to a file that is not there: load_profile says so
    names = bundled_names()
    near = difflib.get_close_matches(str(name_or_path), names, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    raise ProfileError(
        str(name_or_path),
        [f"no such file, and no bundled profile of that name (bundled: {', '.join(names)}){hint}"],
    )
