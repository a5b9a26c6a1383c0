"""Profiles: the schema that validates one (schema), and the profiles bundled with the package."""

from generator.profile.bundled import BUNDLED, DEFAULT_PROFILE, resolve_profile
from generator.profile.schema import (
    ATTRIBUTION_HOURS,
    JOURNEY_PAGES,
    Behaviour,
    Channel,
    Flow,
    FlowKind,
    LoadShape,
    Page,
    PointOfSale,
    Profile,
    ProfileError,
    Variant,
    load_profile,
    parse_profile,
)

__all__ = [
    "ATTRIBUTION_HOURS",
    "BUNDLED",
    "DEFAULT_PROFILE",
    "JOURNEY_PAGES",
    "Behaviour",
    "Channel",
    "Flow",
    "FlowKind",
    "LoadShape",
    "Page",
    "PointOfSale",
    "Profile",
    "ProfileError",
    "Variant",
    "load_profile",
    "parse_profile",
    "resolve_profile",
]
