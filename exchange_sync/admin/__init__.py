"""Admin pages, one module per family of pages. Importing them registers them with admin.site."""

from . import job_queue, runs, setups

__all__ = ["job_queue", "runs", "setups"]
