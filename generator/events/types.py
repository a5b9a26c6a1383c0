"""Event types, re-exported from generator.vocabulary (their one home) for older imports."""

from __future__ import annotations

from generator.vocabulary import CLIENT_TYPES, EVENT_TYPE_NAMES, EventType

__all__ = ["CLIENT_TYPES", "EVENT_TYPE_NAMES", "EventType"]
