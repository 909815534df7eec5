"""Benchmarks: `python -m bench [name ...]` (or `make bench`) prints figures and ratios."""
