"""The help every command shows, tidied once for the whole command tree (not command by command).

typer's defaults read poorly here: `<bool>` beside a switch that takes no value (`--help`
included), a required argument written `{profile}` in the usage line, a bundled profile's
default shown as a long absolute path that the table cuts. `tidy` walks the click tree typer
builds and fixes each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.core import TyperArgument, TyperOption

from generator.profile import BUNDLED

__all__ = ["tidy"]


class _Argument(TyperArgument):
    """An argument written as its metavar in the usage line: PROFILE, [PROFILE], PROFILE..."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")


class _BundledDefault(TyperOption):
    """An option whose default is a bundled profile: shown by the name the option accepts."""

    def _get_default_string(self, **kwargs: Any) -> str:
        return Path(self.default).stem  # type: ignore[arg-type]


def _switch(option: TyperOption | None) -> TyperOption | None:
    if option is not None and option.is_flag and option.metavar is None:
        option.metavar = ""  # a switch: no value to describe
    return option


def tidy(command: Any) -> Any:
    """Tidy the help of `command` and of every sub-command; returns `command`."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            param.__class__ = _Argument
        elif isinstance(param, TyperOption):
            _switch(param)
            if isinstance(param.default, Path) and param.default.parent == BUNDLED:
                param.__class__ = _BundledDefault
    # --help is made per context, when first asked for.
    made = command.get_help_option
    command.get_help_option = lambda ctx: _switch(made(ctx))
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)
    return command
