"""The repo-wide `m365_emulator` fixture other test packages use."""

from __future__ import annotations

import msal

from tests.m365_emulator.transport import emulator_session


def test_shared_fixture_signs_in_and_serves_graph(m365_emulator):
    m365_emulator.emulator.add_mailbox("sales@contoso.test")
    session = emulator_session(m365_emulator.url)
    app = msal.ConfidentialClientApplication(
        "bcsync-tests",
        client_credential="test-secret",
        authority="https://login.microsoftonline.com/bcsync-test",
        http_client=session,
    )
    token = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]
    response = session.get(
        "https://graph.microsoft.com/v1.0/users/sales@contoso.test/contactFolders",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.json()["value"] == []
