"""django-q2 entry points: take ids, call services, nothing else."""

from . import services


def run_contact_sync_task(run_id: int) -> str:
    return services.run_contact_sync(run_id=run_id).status
