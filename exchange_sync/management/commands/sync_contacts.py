"""Run a contact sync for one user in this process and print its summary line."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from exchange_sync.models import RunStatus, SyncMode, SyncTrigger
from exchange_sync.services import contact_sync


class Command(BaseCommand):
    help = "Sync one user's contacts with Microsoft 365 (exit status 1 when the run fails)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument("--full", action="store_true", help="Full Sync: compare everything on both sides")
        parser.add_argument("--preview", action="store_true", help="show the plan; write nothing")
        parser.add_argument("--allow-mass-delete", action="store_true")

    def handle(self, *args, user: str, full: bool, preview: bool, allow_mass_delete: bool, **options):
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"No user named {user!r}.")
        mode = SyncMode.PREVIEW if preview else SyncMode.FULL if full else SyncMode.SYNC
        try:
            run = contact_sync.request_contact_sync(
                user=account,
                mode=mode,
                trigger=SyncTrigger.COMMAND,
                allow_mass_delete=allow_mass_delete,
                enqueue=False,
            )
        except (contact_sync.SyncRefused, contact_sync.SetupIncomplete) as exc:
            raise CommandError(str(exc)) from exc
        run = contact_sync.run_contact_sync_to_end(run_id=run.pk)
        self.stdout.write(run.summary_line())
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run {run.pk} failed: {run.error}")
