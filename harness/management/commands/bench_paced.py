"""A very large first Full Sync paced by the mailbox budget, against the emulator (harness/paced.py)."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand

from harness import bench, paced


class Command(BaseCommand):
    help = (
        "Measure one first Full Sync of N contacts paced by the mailbox budget, with the emulator's "
        "request limit scaled down and the product's budget set to match; prints the budget's bound."
    )

    def add_arguments(self, parser):
        parser.add_argument("--size", type=int, default=100_000, help="contacts (default 100,000)")
        parser.add_argument(
            "--rate-limit", type=int, default=12_000, help="requests per window (default 12,000)"
        )
        parser.add_argument("--rate-window-s", type=float, default=60.0, help="window seconds (default 60)")
        parser.add_argument("--latency-ms", type=float, default=20.0, help="per HTTP request (default 20)")
        parser.add_argument("--item-latency-ms", type=float, default=2.0, help="per item (default 2)")
        parser.add_argument("--json", type=Path, help="write the result to this file")
        parser.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--worker-emulator-url", help=argparse.SUPPRESS)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        limit, window_s = options["rate_limit"], options["rate_window_s"]
        if options["worker_size"] is not None:
            result = paced.measure_paced(
                n=options["worker_size"],
                emulator_url=options["worker_emulator_url"],
                limit=limit,
                window_s=window_s,
                progress=self.stdout.write,
            )
            paced.write_json(path=options["worker_out"], result=result)
            return
        profile = bench.Profile(
            latency_ms=options["latency_ms"], item_latency_ms=options["item_latency_ms"], max_concurrency=4
        )
        result = paced.run_paced(
            n=options["size"], limit=limit, window_s=window_s, profile=profile, progress=self.stdout.write
        )
        self.stdout.write(paced.format_result(result))
        if options["json"]:
            paced.write_json(path=options["json"], result=result)
