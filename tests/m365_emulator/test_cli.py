"""python -m m365_emulator starts a server from flags."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_starts_with_flags():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "m365_emulator",
            "--port",
            "0",
            "--tenant",
            "cli-tenant",
            "--mailbox",
            "a@b.test",
            "--mailbox",
            "c@d.test",
            "--latency-ms",
            "3",
            "--no-shuffle-batch-responses",
            "--rate-limit",
            "50",
            "--mailbox-domain",
            "bcsync-demo.test",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/_emulator/config", timeout=10) as response:  # noqa: S310 - local http URL
            config = json.load(response)
        assert (config["tenant"], config["latency_ms"], config["rate_limit"]) == ("cli-tenant", 3.0, 50)
        assert config["shuffle_batch_responses"] is False
        assert config["mailboxes"] == ["a@b.test", "c@d.test"]
        assert config["mailbox_domain"] == "bcsync-demo.test"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_parsed_flags_are_config_fields_as_they_are():
    """Other tools (make run's settings check) build EmulatorConfig straight from the parsed flags."""
    from m365_emulator import EmulatorConfig
    from m365_emulator.__main__ import build_parser

    arguments = vars(
        build_parser().parse_args(
            ["--mailbox-password", "a@b.test=one", "--mailbox-password", "c@d.test=t=wo", "--grant", "both"]
        )
    )
    for name in ("host", "port", "verbose"):
        del arguments[name]
    config = EmulatorConfig(**arguments)
    assert config.mailbox_passwords == {"a@b.test": "one", "c@d.test": "t=wo"}
    assert (config.grant, config.redirect_uris, config.client_certificates) == ("both", [], [])
    assert vars(build_parser().parse_args([]))["mailbox_passwords"] == {}


def test_notification_knobs_are_flags_in_help():
    from m365_emulator.__main__ import build_parser

    parser = build_parser()
    text = parser.format_help()
    for flag in (
        "--notification-delay-ms",
        "--notification-batch-ms",
        "--notification-duplicate-rate",
        "--notification-drop-rate",
        "--notification-timeout-s",
        "--notification-retry-timeout-s",
        "--notification-retry-base-s",
        "--notification-max-attempts",
        "--validation-timeout-s",
        "--subscription-max-minutes",
        "--slow-endpoint-delay-s",
        "--dropped-endpoint-s",
    ):
        assert flag in text
    args = vars(parser.parse_args(["--notification-drop-rate", "0.25", "--subscription-max-minutes", "4230"]))
    assert (args["notification_drop_rate"], args["subscription_max_minutes"]) == (0.25, 4230)
