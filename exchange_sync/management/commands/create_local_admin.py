"""Create the local superuser on first start and print its generated password once. Its background
synchronization starts on, so `make run` has live updates out of the box."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from bcsync_site.local_env import DEMO_MAILBOX_DOMAIN
from exchange_sync.models import UserCard
from exchange_sync.services import job_queue


class Command(BaseCommand):
    help = "Create a local superuser with a generated password, only when no superuser exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--m365-email", default=f"admin@{DEMO_MAILBOX_DOMAIN}")

    def handle(self, *args, username: str, m365_email: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists already; sign in with its password.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email=m365_email, password=password)
        UserCard.objects.create(user=user, microsoft_365_email=m365_email)
        job_queue.start_background_sync_locally(user=user)
        bar = "=" * 64
        self.stdout.write(
            f"{bar}\n  Admin:    http://127.0.0.1:8000/admin/\n  Username: {username}\n"
            f"  Password: {password}\n  (shown once; change it on the admin's password page)\n{bar}"
        )
