"""Sticky flow assignment: which guests a flow reaches, and which variant each one sees.

A guest's assignment is a pure function of (flow ref, guest ref), so it is the same on every
browser and session, in the generator and in the embedded server, whatever order guests arrive in.
"""

from __future__ import annotations

import uuid

import numpy as np

from generator.profile import Flow, Profile

__all__ = ["FlowTable", "assign", "assign_one", "guest_key"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO53 = float(2**53)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash (wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x >> np.uint64(11)).astype(np.float64) / _TWO53


def guest_key(guest_ref: str) -> int:
    """The 64-bit key of a guest ref, as `generator.model.refs.uuid_u64` computes it in bulk."""
    return int.from_bytes(uuid.UUID(guest_ref).bytes[:8], "big")


class FlowTable:
    """The profile's flows as arrays: salts, allocation and cumulative variant weights."""

    def __init__(self, profile: Profile) -> None:
        self.flows: tuple[Flow, ...] = profile.flows
        self.salts = np.array(
            [int.from_bytes(profile.flow_ref(f).bytes[8:], "big") for f in profile.flows],
            dtype=np.uint64,
        )
        self.allocation = np.array([f.traffic_allocation for f in profile.flows])
        self.cumulative = [np.cumsum([v.weight for v in f.variants]) for f in profile.flows]


def assign(table: FlowTable, flow_index: int, guest_keys: np.ndarray) -> np.ndarray:
    """Variant index per guest for one flow, or -1 where the flow's traffic allocation leaves
    the guest out."""
    h1 = _mix(guest_keys.astype(np.uint64) ^ table.salts[flow_index])
    h2 = _mix(h1)
    cumulative = table.cumulative[flow_index]
    variant = np.searchsorted(cumulative, _unit(h2) * cumulative[-1], side="right")
    variant = np.minimum(variant, len(cumulative) - 1)
    allocated = _unit(h1) < table.allocation[flow_index]
    return np.where(allocated, variant, -1).astype(np.int16)


def assign_one(table: FlowTable, flow_index: int, guest_ref: str) -> int:
    """The variant index one guest sees (or -1), for the server's per-request path."""
    keys = np.array([guest_key(guest_ref)], dtype=np.uint64)
    return int(assign(table, flow_index, keys)[0])
