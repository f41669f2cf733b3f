"""Benchmark quiet Syncs of large linked folders against the emulator (harness/bench_quiet.py)."""

import argparse
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from harness import bench, bench_quiet

DEFAULT_SIZES = "10000,100000"


class Command(BaseCommand):
    help = (
        "Seed N linked contacts in bulk (database and the emulator's state file), then time quiet Syncs "
        "against the emulator started as its own process; the user's database is never touched."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sizes", default=DEFAULT_SIZES, help=f"comma-separated N (default {DEFAULT_SIZES})"
        )
        parser.add_argument("--repeat", type=int, default=5, help="quiet Syncs per N; the median is kept")
        parser.add_argument(
            "--postgres",
            default="",
            metavar="URL",
            help="a PostgreSQL server (postgres://user@host:5432) to measure on, in a database created "
            "for the run and dropped after; default: a scratch SQLite file",
        )
        parser.add_argument("--json", type=Path, help="write the results to this file")
        bench.add_profile_arguments(parser)
        # The parent runs each size in two child processes of this command with a scratch database.
        parser.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--worker-state", type=Path, help=argparse.SUPPRESS)
        parser.add_argument("--worker-measure", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        profile = bench.profile_from_options(options)
        if options["worker_seed"] is not None:
            bench_quiet.seed(n=options["worker_seed"], state_file=options["worker_state"])
            return
        if options["worker_measure"] is not None:
            results = bench_quiet.measure(
                n=options["worker_measure"],
                profile=profile,
                repeat=options["repeat"],
                emulator_url=settings.M365_EMULATOR_URL,
                progress=self.stdout.write,
            )
            bench.write_json(path=options["worker_out"], results=results)
            return
        try:
            sizes = [int(size) for size in options["sizes"].split(",") if size.strip()]
        except ValueError as exc:
            raise CommandError(f"--sizes takes comma-separated whole numbers: {exc}") from exc
        if options["repeat"] < 1:
            raise CommandError("--repeat takes a whole number of at least 1.")
        results = bench_quiet.run_quiet_benchmark(
            sizes=sizes,
            profile=profile,
            repeat=options["repeat"],
            postgres=options["postgres"],
            progress=self.stdout.write,
        )
        self.stdout.write(bench.format_table(results=results))
        if options["json"]:
            bench.write_json(path=options["json"], results=results)
            self.stdout.write(f"Results written to {options['json']}")
