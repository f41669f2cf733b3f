"""Microsoft's request budget per mailbox, shared by every process and host that syncs it."""

from __future__ import annotations

from django.db import models


class MailboxBudget(models.Model):
    """The token bucket of one mailbox (Outlook limits each app and mailbox pair). Times are Unix
    seconds, so hosts with synchronized clocks agree on them; `version` makes each change a
    compare-and-swap UPDATE, which works the same on SQLite and PostgreSQL."""

    mailbox = models.CharField(max_length=250, unique=True)  # lower-cased
    tokens = models.FloatField()
    refilled_at = models.FloatField()
    blocked_until = models.FloatField(default=0.0)  # after a 429: nobody sends before this
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "mailbox budget"

    def __str__(self) -> str:
        return f"{self.mailbox}: {self.tokens:.0f} requests left"
