"""Print the local Microsoft 365 emulator's arguments for this site (used by bin/run-local): the tenant
and app the settings name, the demo domain, and every user's mailbox."""

import shlex

from django.conf import settings
from django.core.management.base import BaseCommand
from django.urls import reverse

from bcsync_site.local_env import DEMO_MAILBOX_DOMAIN
from exchange_sync.models import UserCard


class Command(BaseCommand):
    help = (
        "Print the local emulator's arguments: --tenant, --client-id and --client-secret (or "
        "--client-certificate) from the settings, --grant delegated and --redirect-uri in delegated mode, "
        "--mailbox-domain for the demo domain and '--mailbox UPN' once per user."
    )

    def handle(self, *args, **options):
        arguments = []
        for flag, value in (
            ("--tenant", settings.M365_TENANT_ID),
            ("--client-id", settings.M365_CLIENT_ID),
            ("--client-secret", settings.M365_CLIENT_SECRET),
        ):
            if value:
                arguments += [flag, value]
        if settings.M365_CLIENT_CERTIFICATE:
            arguments += ["--client-certificate", settings.M365_CLIENT_CERTIFICATE]
        if settings.M365_AUTH_MODE == "delegated":
            # Users sign in on the emulator's pages and come back to this site's callback.
            callback = reverse("admin:exchange_sync_exchangesyncsetup_m365_callback")
            redirect_uri = settings.M365_REDIRECT_URI or settings.SITE_URL.rstrip("/") + callback
            arguments += ["--grant", "delegated", "--redirect-uri", redirect_uri]
        arguments += ["--mailbox-domain", DEMO_MAILBOX_DOMAIN]
        upns = UserCard.objects.exclude(microsoft_365_email="").values_list("microsoft_365_email", flat=True)
        for upn in sorted(upns):
            arguments += ["--mailbox", upn]
        self.stdout.write(shlex.join(arguments))
