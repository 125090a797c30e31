"""Benchmark and reliability instruments: `python -m bench` (see bench/run.py)."""
