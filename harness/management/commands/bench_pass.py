"""Benchmark a Job Queue pass over many users on two clusters against the emulator (harness/pass_bench.py)."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from harness import bench, pass_bench


class Command(BaseCommand):
    help = (
        "Run one Codeunit 6700 pass over U users x C contacts with K workers on two default clusters "
        "(plus a one-worker interactive cluster for a Sync button pressed mid-pass), against the "
        "emulator started as its own process, and print the figures. The database is a scratch one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=200, help="U (default 200)")
        parser.add_argument("--contacts", type=int, default=200, help="C per user (default 200)")
        parser.add_argument("--workers", type=int, default=8, help="K, split over two clusters (default 8)")
        parser.add_argument(
            "--database-url",
            default="",
            help="a PostgreSQL database whose name contains 'bench', dropped and recreated for the run "
            "(default: a scratch SQLite file, one host only)",
        )
        parser.add_argument("--json", type=Path, help="write the figures to this file")
        parser.add_argument("--latency-ms", type=float, default=150.0, help="per HTTP request (default 150)")
        parser.add_argument(
            "--item-latency-ms", type=float, default=40.0, help="per item read or written (default 40)"
        )
        parser.add_argument("--max-concurrency", type=int, default=4, help="per mailbox (default 4)")
        # The parent runs the pass in a child process of this command on the scratch database.
        parser.add_argument("--worker-emulator-url", help=argparse.SUPPRESS)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if min(options["users"], options["contacts"], options["workers"]) < 1:
            raise CommandError("--users, --contacts and --workers must be at least 1.")
        profile = bench.Profile(
            latency_ms=options["latency_ms"],
            item_latency_ms=options["item_latency_ms"],
            max_concurrency=options["max_concurrency"],
        )
        sizes = {"users": options["users"], "contacts": options["contacts"], "workers": options["workers"]}
        if options["worker_out"] is not None:
            result = pass_bench.drive_pass(
                **sizes,
                emulator_url=options["worker_emulator_url"],
                profile=profile,
                progress=self.stdout.write,
            )
            pass_bench.write_json(path=options["worker_out"], result=result)
            return
        try:
            result = pass_bench.run_pass_benchmark(
                **sizes, database_url=options["database_url"], profile=profile, progress=self.stdout.write
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(pass_bench.format_result(result))
        if options["json"]:
            pass_bench.write_json(path=options["json"], result=result)
            self.stdout.write(f"Figures written to {options['json']}")
