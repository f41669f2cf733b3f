"""A user's delegated connection to Microsoft 365 (M365_AUTH_MODE=delegated): who signed in, whether
the sign-in still works, and their MSAL token cache, encrypted."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class M365ConnectionStatus(models.TextChoices):
    CONNECTED = "connected", "Connected"
    NEEDS_RECONNECTING = "needs_reconnecting", "Needs reconnecting"


class M365Connection(models.Model):
    """One per user. `token_cache` is the MSAL token cache (refresh, access and id tokens) encrypted
    with TOKEN_ENCRYPTION_KEYS; nothing else here is secret."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="m365_connection"
    )
    account = models.CharField("Signed-in account", max_length=250)
    # MSAL's account key ("<object id>.<tenant id>"), to find the account in the cache.
    home_account_id = models.CharField(max_length=200)
    status = models.CharField(
        max_length=20, choices=M365ConnectionStatus.choices, default=M365ConnectionStatus.CONNECTED
    )
    reason = models.TextField("Why it needs reconnecting", blank=True)
    connected_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    token_cache = models.BinaryField(editable=False)

    class Meta:
        verbose_name = "Microsoft 365 connection"

    def __str__(self) -> str:
        return f"Microsoft 365 connection of {self.user} ({self.get_status_display()})"
