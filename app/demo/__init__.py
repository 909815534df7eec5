"""Realistic, reproducible demo data: one row builder per domain, and the seed that runs them."""
