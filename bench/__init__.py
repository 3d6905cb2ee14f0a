"""Benchmarks: `python -m bench.compare` runs this project against its peers."""
