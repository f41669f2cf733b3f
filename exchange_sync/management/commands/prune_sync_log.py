"""Remove Activity Log entries and Sync Runs older than the retention period now (the daily
Schedule does the same)."""

from django.core.management.base import BaseCommand

from exchange_sync.services import retention


class Command(BaseCommand):
    help = "Remove Activity Log entries and Sync Runs older than SYNC_LOG_RETENTION_DAYS."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")
        parser.add_argument("--days", type=int, help="retention in days (default: SYNC_LOG_RETENTION_DAYS)")

    def handle(self, *args, dry_run: bool, days: int | None, **options):
        result = retention.prune_sync_log(retention_days=days, dry_run=dry_run)
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(
            f"{verb} {result.log_entries} activity log entries, {result.runs} sync runs "
            f"and {result.passes} job queue log entries."
        )
