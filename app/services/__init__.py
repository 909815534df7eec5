"""Business logic shared by the jobs and the ops API."""
