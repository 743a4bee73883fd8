"""Benchmarks: `python -m tests.benchmarks` (see run.py). Not timed tests: a report."""
