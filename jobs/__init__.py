"""What runs on workers: job functions (one module per domain) and the worker runtime."""
