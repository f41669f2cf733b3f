"""Benchmark contact sync against the Microsoft 365 emulator, realistic profile (harness/bench.py)."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from harness import bench

DEFAULT_SIZES = "1000,10000"
LARGE_SIZE = 100_000


class Command(BaseCommand):
    help = (
        "Measure initial Full Sync, quiet Sync, 1 % Sync and re-run Full Sync for N contacts against "
        "the emulator started as its own process; the user's database is never touched."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sizes", default=DEFAULT_SIZES, help=f"comma-separated N (default {DEFAULT_SIZES})"
        )
        parser.add_argument("--large", action="store_true", help=f"add N={LARGE_SIZE:,}")
        parser.add_argument("--json", type=Path, help="write the results to this file")
        bench.add_profile_arguments(parser)
        # The parent runs each size in a child process of this command with a scratch database.
        parser.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--worker-emulator-url", help=argparse.SUPPRESS)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        profile = bench.profile_from_options(options)
        if options["worker_size"] is not None:
            results = bench.measure_size(
                n=options["worker_size"],
                emulator_url=options["worker_emulator_url"],
                profile=profile,
                progress=self.stdout.write,
            )
            bench.write_json(path=options["worker_out"], results=results)
            return
        try:
            sizes = [int(size) for size in options["sizes"].split(",") if size.strip()]
        except ValueError as exc:
            raise CommandError(f"--sizes takes comma-separated whole numbers: {exc}") from exc
        if options["large"]:
            sizes.append(LARGE_SIZE)
        results = bench.run_benchmark(sizes=sizes, profile=profile, progress=self.stdout.write)
        self.stdout.write(bench.format_table(results=results))
        if options["json"]:
            bench.write_json(path=options["json"], results=results)
            self.stdout.write(f"Results written to {options['json']}")
