"""python -m m365_emulator --port 8365 [...]: run the emulator until interrupted.

Delegated sign-in: --grant delegated (or both) --redirect-uri URL [--mailbox-password UPN=PASSWORD];
MSAL's authorization-code flow then signs the tenant's mailboxes in on the emulator's own pages."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from .config import GRANTS, EmulatorConfig
from .server import serve_in_thread


class _PasswordAction(argparse.Action):
    """--mailbox-password UPN=PASSWORD, repeated, into one {UPN: PASSWORD} dict."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, *_: Any
    ) -> None:
        upn, separator, password = str(value).partition("=")
        if not separator or not upn:
            parser.error(f"--mailbox-password wants UPN=PASSWORD, not {value!r}")
        setattr(namespace, self.dest, {**getattr(namespace, self.dest), upn: password})


def _pem_text(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {name}: {error.strerror}") from None


def build_parser() -> argparse.ArgumentParser:
    """Flags whose parsed values (without host, port and verbose) are EmulatorConfig's fields."""
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
    parser.add_argument(
        "--mailbox-password",
        dest="mailbox_passwords",
        action=_PasswordAction,
        default={},
        metavar="UPN=PASSWORD",
        help="the sign-in page asks this mailbox for this password (repeatable); others sign in by address",
    )
    parser.add_argument(
        "--redirect-uri",
        dest="redirect_uris",
        action="append",
        default=[],
        metavar="URL",
        help="a registered redirect URI for delegated sign-in (repeatable; exact match, except that "
        "http://localhost and http://127.0.0.1 match on any port)",
    )
    parser.add_argument(
        "--client-certificate",
        dest="client_certificates",
        action="append",
        type=_pem_text,
        default=[],
        metavar="FILE.pem",
        help="register the certificate(s) in this PEM file for client assertions (repeatable)",
    )
    parser.add_argument(
        "--grant",
        choices=GRANTS,
        default=defaults.grant,
        help="the app's admin-granted permission: application (client credentials reach every mailbox), "
        "delegated (users sign in; client-credentials tokens get 403) or both. Default: %(default)s",
    )
    skip = {
        "state_file", "mailboxes", "mailbox_domain", "mailbox_passwords", "redirect_uris",
        "client_certificates", "grant",
    }  # fmt: skip
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
