"""python -m m365_emulator --port 8365 [...]: run the emulator until interrupted."""

from __future__ import annotations

import argparse
import dataclasses

from .config import EmulatorConfig
from .server import serve_in_thread


def build_parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m m365_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8365)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument("--state", dest="state_file", help="JSON file to load at start and save to")
    parser.add_argument(
        "--mailbox",
        dest="mailboxes",
        action="append",
        default=[],
        metavar="UPN",
        help="mailbox to create (repeatable)",
    )
    parser.add_argument(
        "--mailbox-domain",
        metavar="DOMAIN",
        help="every address in DOMAIN is a licensed mailbox, created when first addressed",
    )
    skip = {"state_file", "mailboxes", "mailbox_domain"}
    for field in dataclasses.fields(EmulatorConfig):
        if field.name in skip:
            continue
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        kind = str(field.type)
        if kind == "bool":
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
        else:
            converter = int if kind.startswith("int") else float if kind.startswith("float") else str
            parser.add_argument(flag, type=converter, default=default, help=f"default: {default}")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    host, port, verbose = args.pop("host"), args.pop("port"), args.pop("verbose")
    server = serve_in_thread(EmulatorConfig(**args), host=host, port=port, verbose=verbose)
    print(
        f"M365 emulator listening on {server.url} (tenant {args['tenant']}, client id {args['client_id']})",
        flush=True,
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
