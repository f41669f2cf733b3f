"""django-q2 entry points: take ids, call services, nothing else."""

from .services import contact_sync, job_queue, retention


def run_contact_sync_task(run_id: int, slice_no: int = 1) -> str:
    return contact_sync.run_contact_sync(run_id=run_id, slice_no=slice_no).status


def run_job_queue_entry_task(entry_id: int) -> str:
    entry = job_queue.run_job_queue_entry(entry_id=entry_id)
    return entry.status if entry is not None else "skipped: not due, held by another run, or gone"


def prune_sync_log_task() -> str:
    result = retention.prune_sync_log()
    return f"removed {result.log_entries} activity log entries and {result.runs} sync runs"
