"""Crash and fault soak of the contact sync: random edits on both sides, syncs killed at random moments,
invariants checked after each trial (harness/soak.py). Exit status 1 on any violation."""

import argparse
import random

from django.core.management.base import BaseCommand, CommandError

from harness.soak import SoakFailed, SoakOptions, run_soak, run_soak_in_scratch_database


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
        # The parent runs the soak in a child process of this command, handing it the options as JSON.
        parser.add_argument("--in-place", help=argparse.SUPPRESS)

    def handle(self, *args, in_place: str | None, database_url: str, **options):
        soak_options = SoakOptions.from_json(in_place) if in_place else self.soak_options(options)
        self.stdout.write(f"seed {soak_options.seed}")
        self.stdout.flush()
        if not in_place:
            try:
                run_soak_in_scratch_database(soak_options, database_url=database_url)
            except SoakFailed as failure:
                raise CommandError(str(failure)) from failure
            return
        try:
            run_soak(soak_options, out=lambda line: (self.stdout.write(line), self.stdout.flush()))
        except SoakFailed as failure:
            raise CommandError(f"{failure}\nReplay with --seed {soak_options.seed}.") from failure
        self.stdout.write(self.style.SUCCESS("soak passed: every invariant held"))

    @staticmethod
    def soak_options(options: dict) -> SoakOptions:
        seed = options["seed"] if options["seed"] is not None else random.SystemRandom().randrange(10**6)
        return SoakOptions(
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
