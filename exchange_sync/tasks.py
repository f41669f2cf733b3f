"""django-q2 entry points: take ids, call services, nothing else."""

from .services import contact_sync, job_queue


def run_contact_sync_task(run_id: int) -> str:
    return contact_sync.run_contact_sync(run_id=run_id).status


def run_job_queue_entry_task(entry_id: int) -> str:
    entry = job_queue.run_job_queue_entry(entry_id=entry_id)
    return entry.status if entry is not None else "skipped: not due, held by another run, or gone"
