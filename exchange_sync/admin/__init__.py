"""Admin pages, one module per family of pages. Importing them registers them with admin.site."""

from . import health, job_queue, runs, setups

__all__ = ["health", "job_queue", "runs", "setups"]
