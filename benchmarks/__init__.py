"""Benchmarks for jobarbiter: run one with ``python -m benchmarks.<name>``."""
