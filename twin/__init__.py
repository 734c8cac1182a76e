"""Twin: a digital twin for governing a city subdistrict, on PostGIS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twin")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
