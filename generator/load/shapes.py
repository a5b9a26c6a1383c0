"""Load shapes (steady, step, spike, diurnal): users as a pure function of elapsed time."""

from __future__ import annotations

import math
from dataclasses import dataclass

from generator.profile import Profile

__all__ = ["ShapeSpec", "level_at", "users_at"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShapeSpec:
    """A profile's `load:` section with the command line's overrides applied."""

    shape: str
    users: int
    spawn_rate: float
    run_time: float
    steps: int = 4
    spike_users: int = 100
    spike_at: float = 0.5
    spike_length: float = 0.1
    daily_curve: tuple[float, ...] = (1.0,) * 24

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        *,
        shape: str | None = None,
        users: int | None = None,
        spawn_rate: float | None = None,
        run_time: float | None = None,
    ) -> ShapeSpec:
        load = profile.load
        return cls(
            shape=shape if shape is not None else load.shape,
            users=users if users is not None else load.users,
            spawn_rate=spawn_rate if spawn_rate is not None else load.spawn_rate,
            run_time=run_time if run_time is not None else load.run_time_seconds,
            steps=load.steps,
            spike_users=load.spike_users,
            spike_at=load.spike_at,
            spike_length=load.spike_length,
            daily_curve=profile.behaviour.daily_curve,
        )

    @property
    def peak_users(self) -> int:
        if self.shape == "spike":
            return max(self.users, self.spike_users)
        return self.users


def users_at(spec: ShapeSpec, elapsed: float) -> tuple[int, float] | None:
    """(users, spawn rate) wanted `elapsed` seconds into the run, or None once the run is over.

    Depends on nothing but its arguments, so Locust's `tick()` can call it every second (or
    twice, or out of order) and always get the same answer for the same moment.
    """
    if elapsed < 0 or elapsed >= spec.run_time:
        return None
    fraction = elapsed / spec.run_time
    if spec.shape == "step":
        step = min(int(fraction * spec.steps), spec.steps - 1)
        return max(1, math.ceil(spec.users * (step + 1) / spec.steps)), spec.spawn_rate
    if spec.shape == "spike":
        if spec.spike_at <= fraction < spec.spike_at + spec.spike_length:
            # A spike arrives at once: start its users within about a second.
            return spec.spike_users, max(spec.spawn_rate, float(spec.spike_users))
        return spec.users, max(spec.spawn_rate, float(spec.spike_users))
    if spec.shape == "diurnal":
        return max(1, round(spec.users * _curve_level(spec.daily_curve, fraction))), spec.spawn_rate
    return spec.users, spec.spawn_rate


def level_at(spec: ShapeSpec, elapsed: float) -> float | None:
    """The shape's height `elapsed` seconds in, as a share of its peak (0 to 1), or None once
    the run is over: what the open model scales its arrival rate by."""
    if elapsed < 0 or elapsed >= spec.run_time:
        return None
    fraction = elapsed / spec.run_time
    peak = spec.peak_users
    if spec.shape == "step":
        step = min(int(fraction * spec.steps), spec.steps - 1)
        return (step + 1) / spec.steps * spec.users / peak
    if spec.shape == "spike":
        spiking = spec.spike_at <= fraction < spec.spike_at + spec.spike_length
        return (spec.spike_users if spiking else spec.users) / peak
    if spec.shape == "diurnal":
        return _curve_level(spec.daily_curve, fraction)
    return 1.0


def _curve_level(curve: tuple[float, ...], fraction: float) -> float:
    """The daily curve, compressed into the run and normalised to its peak, at `fraction` of it;
    linear between hourly values so the user count moves smoothly."""
    peak = max(curve)
    hour = fraction * len(curve)
    low = int(hour) % len(curve)
    high = (low + 1) % len(curve)
    weight = hour - int(hour)
    return (curve[low] * (1 - weight) + curve[high] * weight) / peak
