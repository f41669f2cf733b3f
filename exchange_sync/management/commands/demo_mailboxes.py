"""Print emulator arguments naming every user's Microsoft 365 mailbox (used by bin/run-local)."""

from django.core.management.base import BaseCommand

from exchange_sync.models import UserCard


class Command(BaseCommand):
    help = "Print '--mailbox UPN' once per user for the local Microsoft 365 emulator."

    def handle(self, *args, **options):
        upns = UserCard.objects.exclude(microsoft_365_email="").values_list("microsoft_365_email", flat=True)
        self.stdout.write(" ".join(f"--mailbox {upn}" for upn in sorted(upns)))
