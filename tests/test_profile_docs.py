"""Every profile field is documented in the README's profile table."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from generator.profile.schema import Profile

README = Path(__file__).resolve().parents[1] / "README.md"


def _fields(model: type[BaseModel], path: str = "") -> Iterator[str]:
    """Every field a profile's YAML can hold, dotted, with its YAML spelling (the alias)."""
    for name, info in model.model_fields.items():
        if info.exclude:  # set by the loader, never written in a profile
            continue
        key = path + (info.alias or name)
        yield key
        stack = [info.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from _fields(kind, key + ".")
            stack.extend(typing.get_args(kind))


def test_every_profile_field_is_in_the_readme_profile_table() -> None:
    text = README.read_text()
    table = text[text.index("## Profiles") : text.index("### Assignment")]
    rows = "\n".join(line for line in table.splitlines() if line.startswith("| `"))
    fields = sorted(set(_fields(Profile)))
    assert len(fields) > 40  # the walk reaches nested models (points of sale, flows, load)
    missing = [
        f for f in fields if not re.search(rf"`[^`\n]*\b{re.escape(f.split('.')[-1])}\b", rows)
    ]
    assert not missing, f"profile fields not in the README's profile table: {missing}"
