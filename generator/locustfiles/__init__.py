"""Locust scenarios shipped with the package (`cdpsim load` runs them by path)."""
