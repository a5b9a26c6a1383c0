"""Faker-built pools (names, user agents), made once per run, sampled by index in the hot path."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from faker import Faker

from generator.model.agents import agent_pool
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
    """Per point of sale name pools (in its locale) and one user-agent pool (POOL_SIZE agents
    per device, in Device order: generator.model.agents)."""

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
            names.append(_name_pool(fake))
        return cls(names=tuple(names), user_agents=agent_pool(seed, POOL_SIZE))


_NAME_PROVIDERS = ["faker.providers.person"]


def _name_pool(fake: Faker) -> NamePool:
    """POOL_SIZE first and last names in the locale. Where the locale writes names in a script
    that does not fold to ASCII but has them romanized too (ja_JP: kanji, kana, romaji), emails
    take the romanized form, so that they are not all `guest.guest.N@`."""
    if hasattr(fake, "first_name_pair") and hasattr(fake, "last_name_pair"):
        first = [fake.first_name_pair() for _ in range(POOL_SIZE)]
        last = [fake.last_name_pair() for _ in range(POOL_SIZE)]
        return NamePool(
            tuple(x[0] for x in first),
            tuple(x[0] for x in last),
            tuple(ascii_slug(x[-1]) for x in first),
            tuple(ascii_slug(x[-1]) for x in last),
        )
    return NamePool.of(
        tuple(fake.first_name() for _ in range(POOL_SIZE)),
        tuple(fake.last_name() for _ in range(POOL_SIZE)),
    )


# The last pools built, with the profile they belong to (so the id cannot be reused).
_built: dict[tuple[int, int], tuple[Profile, Pools]] = {}


def ascii_slug(text: str) -> str:
    """A lower-case ASCII form of a name for an email's local part."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "".join(c for c in folded.lower() if c.isalnum())
    return slug or "guest"
