"""cdpsim: a simulator of a Sitecore CDP tenant's traffic (package `generator`)."""

# The one place the version lives; pyproject.toml reads it (and importlib.metadata is slow).
__version__ = "0.1.0"

__all__ = ["__version__"]
