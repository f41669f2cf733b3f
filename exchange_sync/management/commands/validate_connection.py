"""Validate Exchange Connection for one user (or every user with a Microsoft 365 email)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from exchange_sync.services import contact_sync


class Command(BaseCommand):
    help = "Validate the Microsoft 365 connection: email, sign-in, mailbox and the sync folder."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="username (default: every user with a Microsoft 365 email)")

    def handle(self, *args, user: str | None, **options):
        accounts = get_user_model().objects
        users = accounts.filter(user_card__isnull=False).exclude(user_card__microsoft_365_email="")
        if user:
            users = accounts.filter(username=user)
            if not users.exists():
                raise CommandError(f"No user named {user!r}.")
        failed = 0
        for account in users.order_by("username"):
            check = contact_sync.validate_exchange_connection(user=account)
            failed += not check.ok
            self.stdout.write(f"{account.username}: {check.message}")
        if failed:
            raise CommandError(f"{failed} connection(s) failed.")
