"""Crash and fault soak of the contact sync: random edits on both sides, syncs killed at random moments,
invariants checked after each trial (exchange_sync/soak.py). Exit status 1 on any violation."""

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exchange_sync.soak import SoakFailed, SoakOptions, run_soak


class Command(BaseCommand):
    help = (
        "Soak the contact sync: random edits in Business Central and Outlook, Sync/Full Sync processes "
        "SIGKILLed at random moments, then checks (no duplicates, no lost edits, one to one, quiet rerun). "
        "Runs on a throwaway SQLite database unless --database-url names another empty one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--trials", type=int, default=20)
        parser.add_argument("--seed", type=int, default=None, help="replay a run (printed first)")
        parser.add_argument("--kill-prob", type=float, default=SoakOptions.kill_prob)
        parser.add_argument("--max-kills", type=int, default=SoakOptions.max_kills)
        parser.add_argument("--faults", action="store_true", help="429/503, token and delta link expiry")
        parser.add_argument("--fault-rate-429", type=float, default=SoakOptions.fault_rate_429)
        parser.add_argument("--fault-rate-503", type=float, default=SoakOptions.fault_rate_503)
        parser.add_argument("--retry-after", type=int, default=SoakOptions.retry_after_s, help="seconds")
        parser.add_argument("--contacts", type=int, default=SoakOptions.contacts)
        parser.add_argument("--latency-ms", type=float, default=SoakOptions.latency_ms)
        parser.add_argument("--item-latency-ms", type=float, default=SoakOptions.item_latency_ms)
        parser.add_argument(
            "--database-url",
            default="",
            help="an empty database to migrate and use (default: throwaway SQLite)",
        )
        parser.add_argument("--in-place", action="store_true", help="use this process's database (internal)")

    def handle(self, *args, **options):
        seed = options["seed"] if options["seed"] is not None else random.SystemRandom().randrange(10**6)
        self.stdout.write(f"seed {seed}")
        self.stdout.flush()
        if not options["in_place"]:
            return self._in_scratch_database(seed, options)
        soak_options = SoakOptions(
            trials=options["trials"],
            seed=seed,
            kill_prob=options["kill_prob"],
            max_kills=options["max_kills"],
            faults=options["faults"],
            fault_rate_429=options["fault_rate_429"],
            fault_rate_503=options["fault_rate_503"],
            retry_after_s=options["retry_after"],
            contacts=options["contacts"],
            latency_ms=options["latency_ms"],
            item_latency_ms=options["item_latency_ms"],
        )
        try:
            run_soak(soak_options, out=lambda line: (self.stdout.write(line), self.stdout.flush()))
        except SoakFailed as failure:
            raise CommandError(f"{failure}\nReplay with --seed {seed}.") from failure
        self.stdout.write(self.style.SUCCESS("soak passed: every invariant held"))

    def _in_scratch_database(self, seed: int, options) -> None:
        """Migrate a throwaway database and run the soak in a child process pointed at it, so the
        user's own database (whose persons would all be in scope) is never touched."""
        with tempfile.TemporaryDirectory(prefix="bcsync-soak-db-") as scratch:
            env = {
                **os.environ,
                "BCSYNC_VAR_DIR": scratch,
                "DATABASE_URL": options["database_url"] or f"sqlite:///{Path(scratch) / 'soak.sqlite3'}",
            }
            manage = str(settings.BASE_DIR / "manage.py")
            migrate = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
                [sys.executable, manage, "migrate", "--noinput", "-v", "0"], env=env, check=False
            )
            if migrate.returncode:
                raise CommandError("Could not migrate the soak database.")
            passthrough = [
                "--trials", str(options["trials"]), "--seed", str(seed),
                "--kill-prob", str(options["kill_prob"]), "--max-kills", str(options["max_kills"]),
                "--fault-rate-429", str(options["fault_rate_429"]),
                "--fault-rate-503", str(options["fault_rate_503"]),
                "--retry-after", str(options["retry_after"]), "--contacts", str(options["contacts"]),
                "--latency-ms", str(options["latency_ms"]),
                "--item-latency-ms", str(options["item_latency_ms"]),
                "--in-place", *(["--faults"] if options["faults"] else []),
            ]  # fmt: skip
            child = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
                [sys.executable, manage, "soak_sync", *passthrough], env=env, check=False
            )
            if child.returncode:
                raise CommandError(f"The soak found a problem (exit status {child.returncode}); seed {seed}.")
