"""The boot script and the scheduler process: `python -m scheduler_boot`."""
