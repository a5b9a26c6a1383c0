"""Faker-built pools (names, user agents), made once per run, sampled by index in the hot path."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from faker import Faker

from generator.profile import Profile

__all__ = ["POOL_SIZE", "Pools", "ascii_slug"]

POOL_SIZE = 512


@dataclass(frozen=True, slots=True)
class NamePool:
    first: tuple[str, ...]
    last: tuple[str, ...]
    first_slug: tuple[str, ...]  # ASCII forms for email addresses, folded once
    last_slug: tuple[str, ...]

    @classmethod
    def of(cls, first: tuple[str, ...], last: tuple[str, ...]) -> NamePool:
        return cls(
            first, last, tuple(ascii_slug(x) for x in first), tuple(ascii_slug(x) for x in last)
        )


@dataclass(frozen=True, slots=True)
class Pools:
    """Per point of sale name pools (in its locale) and one user-agent pool."""

    names: tuple[NamePool, ...]
    user_agents: tuple[str, ...]

    @classmethod
    def build(cls, profile: Profile, seed: int) -> Pools:
        """The pools of a profile and seed; built once per profile object (Faker is slow)."""
        hit = _built.get((id(profile), seed))
        if hit is not None and hit[0] is profile:
            return hit[1]
        pools = cls._build(profile, seed)
        _built.clear()
        _built[(id(profile), seed)] = (profile, pools)
        return pools

    @classmethod
    def _build(cls, profile: Profile, seed: int) -> Pools:
        # Only the providers used: a whole Faker loads some twenty-five of them, and that
        # was most of the cost of building. The values are the same either way.
        names = []
        for pos in profile.points_of_sale:
            try:
                fake = Faker(pos.locale, providers=_NAME_PROVIDERS)
            except AttributeError:
                fake = Faker("en_US", providers=_NAME_PROVIDERS)
            fake.seed_instance(seed)
            names.append(
                NamePool.of(
                    tuple(fake.first_name() for _ in range(POOL_SIZE)),
                    tuple(fake.last_name() for _ in range(POOL_SIZE)),
                )
            )
        agents = Faker("en_US", providers=_AGENT_PROVIDERS)
        agents.seed_instance(seed)
        return cls(
            names=tuple(names), user_agents=tuple(agents.user_agent() for _ in range(POOL_SIZE))
        )


_NAME_PROVIDERS = ["faker.providers.person"]
# user_agent() dates its Firefox builds through the date_time provider.
_AGENT_PROVIDERS = ["faker.providers.user_agent", "faker.providers.date_time"]

# The last pools built, with the profile they belong to (so the id cannot be reused).
_built: dict[tuple[int, int], tuple[Profile, Pools]] = {}


def ascii_slug(text: str) -> str:
    """A lower-case ASCII form of a name for an email's local part."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "".join(c for c in folded.lower() if c.isalnum())
    return slug or "guest"
