"""Benchmark scripts: `python -m bench all --size 10000` (see docs/benchmarks.md)."""
