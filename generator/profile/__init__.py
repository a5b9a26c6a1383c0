"""Profiles: the schema that validates one (schema), and the profiles bundled with the package."""

from generator.profile import bundled, schema
from generator.profile.bundled import *  # noqa: F403 (the public face is the two modules' __all__)
from generator.profile.schema import *  # noqa: F403

__all__ = [*schema.__all__, *bundled.__all__]
