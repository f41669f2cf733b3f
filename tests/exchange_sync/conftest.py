import pytest


@pytest.fixture
def emulator(m365):
    return m365.emulator


@pytest.fixture
def outlook(emulator, sync_user):
    """The sync user's mailbox, edited as a person in Outlook would (the emulator's back door)."""
    return emulator.outlook(sync_user.user_card.microsoft_365_email)
