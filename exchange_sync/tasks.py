"""django-q2 entry points: take ids, call services, nothing else."""

from .services import contact_sync, job_queue, live_updates, retention


def run_contact_sync_task(run_id: int, slice_no: int = 1) -> str:
    return contact_sync.run_contact_sync(run_id=run_id, slice_no=slice_no).status


def run_job_queue_entry_task(entry_id: int) -> str:
    entry = job_queue.run_job_queue_entry(entry_id=entry_id)
    return entry.status if entry is not None else "skipped: not due, held by another run, or gone"


def prune_sync_log_task() -> str:
    result = retention.prune_sync_log()
    return (
        f"removed {result.log_entries} activity log entries, {result.runs} sync runs "
        f"and {result.passes} job queue log entries"
    )


def run_pass_user_task(log_entry_id: int, user_id: int) -> str:
    return job_queue.run_pass_user(log_entry_id=log_entry_id, user_id=user_id)


def maintain_subscriptions_task() -> str:
    counts = live_updates.maintain_subscriptions()
    return f"{counts['ok']} subscriptions current, {counts['failed']} failed, {counts['removed']} removed"


def subscribe_task(user_id: int) -> str:
    live_updates.subscribe(user_id=user_id)
    return "done"


def handle_lifecycle_event_task(user_id: int, event: str, graph_id: str) -> str:
    live_updates.handle_lifecycle_event(user_id=user_id, event=event, graph_id=graph_id)
    return event
