"""The Cronwork core: keys, stored formats, specs, timing and the run lifecycle.

Every process (web, worker, scheduler) uses it; it imports nothing from `app`, `jobs` or
`scheduler_boot`.
"""
