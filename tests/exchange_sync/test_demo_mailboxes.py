import io
import shlex

import pytest
from django.core.management import call_command

from m365_emulator.__main__ import build_parser
from tests.factories import UserCardFactory

pytestmark = pytest.mark.django_db


def test_every_users_mailbox_reaches_the_emulators_command_line():
    for email in ("bob@contoso.test", "ann@contoso.test", ""):
        UserCardFactory(microsoft_365_email=email)
    out = io.StringIO()
    call_command("demo_mailboxes", stdout=out)
    arguments = build_parser().parse_args(shlex.split(out.getvalue()))
    assert arguments.mailboxes == ["ann@contoso.test", "bob@contoso.test"]
