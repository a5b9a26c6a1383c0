"""cdpsim: a simulator of a Sitecore CDP tenant's traffic (package `generator`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdpsim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
