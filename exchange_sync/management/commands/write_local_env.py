"""Add the local Microsoft 365 emulator's settings to .env where it has none (used by bin/run-local)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from bcsync_site.local_env import add_local_emulator_settings


class Command(BaseCommand):
    help = (
        "Write the local emulator's M365_* settings into .env where .env has no value for them, so every "
        "command finds the emulator that make run starts. Values already in .env are never changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--env-file", default=str(settings.BASE_DIR / ".env"))

    def handle(self, *args, env_file: str, **options):
        added = add_local_emulator_settings(env_file=Path(env_file))
        if added:
            self.stdout.write(f"Added to {env_file} for the local emulator: {', '.join(added)}")
