"""The package version, read by pyproject.toml and sent in the ``tv`` field."""

__version__ = "0.1.0"

#: Tracker version string sent as ``tv`` on every event.
TRACKER_VERSION = f"py-threaded-{__version__}"
