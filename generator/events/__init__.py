"""Turning simulated facts into stored-form and wire-form events, and serialising them."""
