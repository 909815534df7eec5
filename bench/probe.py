"""A trivial job for the stock-rq side of the benchmarks (no app context needed)."""


def noop() -> None:
    """Do nothing: the benchmark measures the machinery around the job."""
