"""The user's sync folder in Outlook: found, created, renamed, or exchanged for another one.

`look_up_folder` only reads (Preview and Validate use it): it says what the next Sync will do.
`prepare_folder` (Sync and Full Sync) does it:

- the setup's folder exists under the setup's name: use it;
- it exists under another name (Folder name was changed) and no other folder has the new name:
  rename it in Outlook. Its contacts, their ids and its delta link stay valid, so nothing is sent
  again and nothing is duplicated;
- another folder already has the new name: move the synced contacts of the old folder into it, or
  remove them from Outlook, as the setup's `existing_folder_policy` says; then sync that folder;
- the setup has no folder in this mailbox (first Sync, another mailbox, deleted in Outlook): use the
  folder of that name, or create it; links to another folder are dropped and email matching pairs
  the contacts again.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from contacts.models import normalize_email

from ..graph import GraphClient, ItemNotFound, contact_create_request, contact_delete_request
from ..models import ActivityLog, ContactLink, ContactSyncSetup, ExistingFolderPolicy, Outcome, SyncRun
from ..sync.mapping import FAX_PROPERTY_ID
from ..sync.planner import CREATING

# What Outlook sets on a contact; a copy made elsewhere gets its own.
SERVER_MANAGED = frozenset(
    {
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "parentFolderId",
        # Positional views of emailAddresses, which the copy carries.
        "primaryEmailAddress",
        "secondaryEmailAddress",
        "tertiaryEmailAddress",
    }
)


class FolderStep(enum.Enum):
    READY = "ready"
    CREATE = "create"
    ADOPT = "adopt"  # a folder of that name exists and becomes the sync folder
    RENAME = "rename"
    MOVE = "move"
    REMOVE = "remove"


@dataclass(frozen=True)
class FolderPlan:
    step: FolderStep
    name: str
    current: dict[str, Any] | None  # the setup's folder, if it still exists in this mailbox
    target: dict[str, Any] | None  # the folder named `name`, if there is one

    @property
    def folder_to_read(self) -> str:
        """The folder whose contacts the next Sync starts from ("" when there is none yet): a
        renamed or emptied folder keeps its links, so a Preview reads it."""
        if self.step in (FolderStep.READY, FolderStep.RENAME, FolderStep.MOVE):
            assert self.current is not None
            return self.current["id"]
        return self.target["id"] if self.target is not None else ""

    def describe(self, *, done: bool) -> str:
        """What the next Sync does with the folder, or (`done`) what this one did: a phrase."""
        old = f"'{self.current['displayName']}'" if self.current else ""
        new = f"'{self.name}'"
        text = {
            FolderStep.READY: (f"folder {new} is ready", f"folder {new} is ready"),
            FolderStep.ADOPT: (
                f"folder {new} exists and becomes the sync folder",
                f"folder {new} became the sync folder",
            ),
            FolderStep.CREATE: (
                f"folder {new} will be created by the first Sync",
                f"folder {new} was created in Outlook",
            ),
            FolderStep.RENAME: (
                f"the Outlook folder {old} will be renamed {new} by the next Sync, its contacts kept",
                f"the Outlook folder {old} was renamed {new}, its contacts kept",
            ),
            FolderStep.MOVE: (
                f"the next Sync moves the synced contacts of {old} into the existing folder {new}",
                f"the synced contacts of {old} were moved into the existing folder {new}",
            ),
            FolderStep.REMOVE: (
                f"the next Sync removes the synced contacts of {old} from Outlook and fills the "
                f"existing folder {new} from Business Central",
                f"the synced contacts of {old} were removed from Outlook; the existing folder {new} "
                "is filled from Business Central",
            ),
        }[self.step][done]
        return text

    def sentence(self, *, done: bool) -> str:
        text = self.describe(done=done)
        return text[0].upper() + text[1:] + "."


def look_up_folder(*, client: GraphClient, setup: ContactSyncSetup, mailbox: str) -> FolderPlan:
    """What the next Sync will do with the folder. Sends only reads."""
    current = None
    if setup.has_folder_in(mailbox):
        current = client.get_contact_folder(mailbox=mailbox, folder_id=setup.folder_id)
    if current is not None and current.get("displayName") == setup.folder_name:
        return FolderPlan(FolderStep.READY, setup.folder_name, current, current)
    target = client.find_contact_folder(mailbox=mailbox, display_name=setup.folder_name)
    if current is None:
        step = FolderStep.ADOPT if target is not None else FolderStep.CREATE
    elif target is None or target["id"] == current["id"]:  # Outlook compares names ignoring case
        step = FolderStep.RENAME
    elif setup.existing_folder_policy == ExistingFolderPolicy.REMOVE:
        step = FolderStep.REMOVE
    else:
        step = FolderStep.MOVE
    return FolderPlan(step, setup.folder_name, current, target)


def prepare_folder(*, client: GraphClient, setup: ContactSyncSetup, mailbox: str, run: SyncRun) -> str:
    """Make the folder the setup names the sync folder (see the module's docstring); returns its id.
    Any change is logged on `run`."""
    if not setup.has_folder_in(mailbox):
        # No folder of the setup's to keep: create it, which adopts one already of that name (Graph
        # refuses the duplicate). A first Sync spends one request on its folder instead of two.
        target = client.create_contact_folder(mailbox=mailbox, display_name=setup.folder_name)
        return _switch_folder(setup=setup, mailbox=mailbox, target=target, run=run)
    folder = look_up_folder(client=client, setup=setup, mailbox=mailbox)
    if folder.step == FolderStep.READY:
        return setup.folder_id
    if folder.step == FolderStep.RENAME:
        assert folder.current is not None
        client.rename_contact_folder(
            mailbox=mailbox, folder_id=setup.folder_id, display_name=setup.folder_name
        )
        _log(run, folder)
        return setup.folder_id
    if folder.step == FolderStep.CREATE:
        target = client.create_contact_folder(mailbox=mailbox, display_name=setup.folder_name)
    else:
        assert folder.target is not None
        target = folder.target
    if folder.step in (FolderStep.MOVE, FolderStep.REMOVE):
        assert folder.current is not None
        _empty_old_folder(
            client=client,
            setup=setup,
            mailbox=mailbox,
            target_id=target["id"],
            move=folder.step == FolderStep.MOVE,
        )
    return _switch_folder(
        setup=setup,
        mailbox=mailbox,
        target=target,
        run=run,
        keep_links=folder.step == FolderStep.MOVE,
        # A first folder, or one found by name, needs no word.
        logged=folder if folder.current is not None else None,
    )


def _switch_folder(
    *,
    setup: ContactSyncSetup,
    mailbox: str,
    target: dict[str, Any],
    run: SyncRun,
    keep_links: bool = False,
    logged: FolderPlan | None = None,
) -> str:
    """Make `target` the setup's folder, to be read from scratch. Links to another folder go unless
    `keep_links` (their contacts were moved into it); email matching pairs the contacts again.
    `logged`: the folder change to log on `run`."""
    with transaction.atomic():
        if not keep_links:
            ContactLink.objects.filter(setup=setup).delete()
        ContactSyncSetup.objects.filter(pk=setup.pk).update(
            folder_id=target["id"], folder_mailbox=mailbox, delta_link="", watermark=None
        )
        if logged is not None:
            _log(run, logged)
    setup.folder_id, setup.folder_mailbox, setup.delta_link, setup.watermark = target["id"], mailbox, "", None
    return setup.folder_id


def _log(run: SyncRun, folder: FolderPlan) -> None:
    ActivityLog.objects.create(
        run=run,
        user_id=run.user_id,
        action="Sync folder",
        outcome=Outcome.UPDATED,
        message=folder.sentence(done=True),
    )


def _empty_old_folder(
    *, client: GraphClient, setup: ContactSyncSetup, mailbox: str, target_id: str, move: bool
) -> None:
    """Take the synced contacts out of the old folder; with `move`, copy them into the target first.

    Graph has no move for contacts, so a move copies each one, with every property Outlook has on it,
    and points its link at the copy. A contact whose email the target already holds is not copied:
    the next Sync links it to the target's contact and sends Business Central's values.
    Links are saved as each $batch of copies lands, before anything is deleted; the old folder's
    copies are recognised by link or by a synced contact's email, so a run stopped half-way is
    finished by the next one without copying twice or leaving a duplicate. The old folder is
    deleted when nothing else is left in it."""
    links = list(ContactLink.objects.filter(setup=setup))
    by_graph_id = {link.graph_id: link for link in links}
    synced_emails = {link.email for link in links if link.email and link.contact_id is not None}
    old = [
        item
        for item in client.list_contacts(
            mailbox=mailbox, folder_id=setup.folder_id, expand_extended=[FAX_PROPERTY_ID]
        )
        if item["id"] in by_graph_id or _emails(item) & synced_emails
    ]
    if move:
        to_copy = [
            (by_graph_id[item["id"]], item)
            for item in old
            if item["id"] in by_graph_id and by_graph_id[item["id"]].contact_id is not None
        ]
        _copy_linked(client=client, mailbox=mailbox, target_id=target_id, to_copy=to_copy)
    requests = [
        contact_delete_request(
            id=str(index), mailbox=mailbox, folder_id=setup.folder_id, contact_id=item["id"]
        )
        for index, item in enumerate(old, start=1)
    ]
    for results in client.batch_iter(mailbox=mailbox, requests=requests):
        for result in results:
            if result.error is not None and not isinstance(result.error, ItemNotFound):
                raise result.error
    if (
        next(iter(client.list_contacts(mailbox=mailbox, folder_id=setup.folder_id, page_size=1)), None)
        is None
    ):
        client.delete_contact_folder(mailbox=mailbox, folder_id=setup.folder_id)


def _copy_linked(
    *, client: GraphClient, mailbox: str, target_id: str, to_copy: list[tuple[ContactLink, dict[str, Any]]]
) -> None:
    in_target = set().union(
        *(_emails(item) for item in client.list_contacts(mailbox=mailbox, folder_id=target_id))
    )
    relinked: list[ContactLink] = []
    copies: dict[str, tuple[ContactLink, dict[str, Any]]] = {}
    for link, item in to_copy:
        if link.email in in_target:
            # As for a create whose answer was lost: the next Sync links the contact with this email.
            link.graph_id, link.change_key, link.pending = f"{CREATING}{uuid.uuid4().hex}", "", True
            relinked.append(link)
        else:
            copies[str(len(copies) + 1)] = (link, item)
    ContactLink.objects.write_fields(relinked, ["graph_id", "change_key", "pending"])
    requests = [
        contact_create_request(
            id=request_id,
            mailbox=mailbox,
            folder_id=target_id,
            contact={
                k: v for k, v in item.items() if k not in SERVER_MANAGED and not k.startswith("@odata.")
            },
        )
        for request_id, (_, item) in copies.items()
    ]
    for results in client.batch_iter(mailbox=mailbox, requests=requests):
        copied = []
        for result in results:
            if result.error is None:
                link = copies[result.id][0]
                link.graph_id, link.change_key = result.body["id"], result.body.get("changeKey") or ""
                copied.append(link)
        ContactLink.objects.write_fields(copied, ["graph_id", "change_key"])
        for result in results:
            if result.error is not None:
                raise result.error  # nothing is deleted: the old folder keeps what was not copied


def _emails(item: dict[str, Any]) -> set[str]:
    return {normalize_email(address.get("address")) for address in item.get("emailAddresses") or []}
