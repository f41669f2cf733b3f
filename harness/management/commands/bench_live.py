"""Benchmark live updates: the emulator, runserver and qcluster as processes (harness/live_bench.py)."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand

from harness import bench, live_bench


class Command(BaseCommand):
    help = (
        "Measure BC -> Outlook and Outlook -> BC latency with live updates (p50/p95), a burst of 1,000 "
        "BC edits, and the idle Graph cost of live updates vs hourly polling; on a scratch database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=20)
        parser.add_argument("--contacts-per-user", type=int, default=50)
        parser.add_argument("--edits", type=int, default=100, help="edits each way (default 100)")
        parser.add_argument(
            "--database-url",
            default="",
            help="a scratch database to use (default: a SQLite file in a temp dir)",
        )
        parser.add_argument("--json", type=Path, help="write the result to this file")
        bench.add_profile_arguments(parser)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        profile = bench.profile_from_options(options)
        sizes = {"users": options["users"], "contacts_per_user": options["contacts_per_user"]}
        if options["worker_out"] is not None:
            result = live_bench.measure(
                **sizes, edits=options["edits"], profile=profile, progress=self.stdout.write
            )
            live_bench.write_result(path=options["worker_out"], result=result)
            return
        result = live_bench.run_benchmark(
            **sizes,
            edits=options["edits"],
            profile=profile,
            database_url=options["database_url"],
            progress=self.stdout.write,
        )
        self.stdout.write(live_bench.format_result(result))
        if options["json"]:
            live_bench.write_result(path=options["json"], result=result)
            self.stdout.write(f"Result written to {options['json']}")
