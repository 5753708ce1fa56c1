"""Benchmarks and stress tools for snowplow_threaded (not part of the package)."""
