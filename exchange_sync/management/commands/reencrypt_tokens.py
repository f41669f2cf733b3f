"""Re-encrypt every stored Microsoft 365 token cache under the newest of TOKEN_ENCRYPTION_KEYS: after
adding a new key in front, run this, then remove the old keys."""

from django.core.management.base import BaseCommand, CommandError

from exchange_sync.services import m365_connections


class Command(BaseCommand):
    help = "Re-encrypt the stored Microsoft 365 token caches under the first key of TOKEN_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        rotated, unreadable = m365_connections.reencrypt_tokens()
        self.stdout.write(f"Re-encrypted {rotated} Microsoft 365 connection(s) under the newest key.")
        if unreadable:
            raise CommandError(
                f"{unreadable} connection(s) could not be decrypted with any key in TOKEN_ENCRYPTION_KEYS: "
                "keep the key they were encrypted with, or those users must reconnect."
            )
