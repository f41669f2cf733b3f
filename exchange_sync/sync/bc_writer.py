"""The Business Central half of a plan: imports and updates from Outlook, the Outlook fields merges
keep, stopping and dropping links, and skips. Each chunk is written under row lock in one transaction
with its log entries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from contacts.changes import written_by
from contacts.models import Contact, ContactType, normalize_email, phone_validator
from exchange_sync.models import ContactLink, ContactSyncSetup, Direction, Outcome

from .activity_log import (
    ACTION_NAMES,
    DB_CHUNK,
    SKIPPED_SEND,
    RunLog,
    contact_label,
    import_details,
    overwritten_text,
    problems_text,
)
from .filters import pinned_values
from .mapping import OutlookContact, bc_record, caption, changed_fields, is_valid_email, record_hash
from .planner import Action, ActionKind
from .reader import chunks

# The record's plain text fields, copied as Outlook has them.
TEXT_FIELDS = (
    "first_name",
    "middle_name",
    "surname",
    "initials",
    "job_title",
    "email_2",
    "home_page",
    "address",
    "address_2",
    "city",
    "post_code",
    "county",
)


class BcWriter:
    def __init__(self, *, setup: ContactSyncSetup, log: RunLog) -> None:
        self.setup = setup
        self.log = log
        self.kept_imported: frozenset[int] = frozenset()  # in scope only as imported from this folder

    def apply(self, actions: list[Action]) -> None:
        # Announced as this user's own writes: live updates do not sync them back to this user.
        with written_by(self.setup.user_id):
            for chunk in chunks(actions, DB_CHUNK):
                self._apply_chunk(chunk)

    def take_outlook_fields(self, merges: list[Action]) -> None:
        """The Business Central half of merges, before Business Central's values go to Outlook: the
        fields only Outlook changed, under lock, each contact unchanged since the plan (else Business
        Central's values win, and what they overwrite in Outlook is logged as they are sent). The
        links keep their last-synced records until Outlook has the merged values, so a run stopped
        in between merges again."""
        with written_by(self.setup.user_id):
            for chunk in chunks(merges, DB_CHUNK):
                companies = self._companies_for(chunk)
                with transaction.atomic():
                    contacts = Contact.objects.select_for_update().in_bulk([a.contact_id for a in chunk])
                    for action in chunk:
                        self._write_from_outlook(action, contacts.get(action.contact_id), companies)
                    self.log.flush()

    def _take_fields(
        self, action: Action, contact: Contact | None, companies: dict[str, list[Contact]]
    ) -> None:
        if contact is None or record_hash(bc_record(contact)) != action.expected_bc_hash:
            return
        assert action.outlook is not None and action.from_outlook is not None
        before = bc_record(contact)
        problems = self._apply_record(contact, action.outlook, companies, keys=action.from_outlook)
        contact.save()
        self._log_update(contact, action.outlook, before, problems)

    def _apply_chunk(self, actions: list[Action]) -> None:
        contact_ids = [a.contact_id for a in actions if a.contact_id is not None]
        companies = self._companies_for(actions)
        with transaction.atomic():
            # Read under lock in the writing transaction: an edit made since the plan is either
            # seen here (and kept) or waits for this transaction, never lost in between.
            contacts = Contact.objects.select_for_update().in_bulk(contact_ids)
            for action in actions:
                contact = contacts.get(action.contact_id) if action.contact_id is not None else None
                if action.kind in (ActionKind.IMPORT_TO_BC, ActionKind.UPDATE_BC):
                    self._write_from_outlook(action, contact, companies)
                elif action.kind == ActionKind.DETACH:
                    ContactLink.objects.filter(pk=action.link_id).update(
                        detached=True, **_outlook_as_seen(action)
                    )
                    self.log.add(
                        contact=contact,
                        graph_id=action.graph_id or "",
                        direction=Direction.NONE,
                        action=ACTION_NAMES[action.kind],
                        outcome=Outcome.SKIPPED,
                        message=f"{contact_label(contact, action)} is {action.reason}.",
                    )
                elif action.kind == ActionKind.DROP_LINK:
                    ContactLink.objects.filter(pk=action.link_id).delete()
                    if action.contact_id in self.kept_imported:  # Business Central keeps it: say why
                        self.log.add(
                            contact=contact,
                            graph_id=action.graph_id or "",
                            action=ACTION_NAMES[ActionKind.DETACH],
                            outcome=Outcome.SKIPPED,
                            message=f"{contact_label(contact, action)} was {action.reason}.",
                        )
                elif action.kind == ActionKind.SKIP:
                    self._skip(action, contact)
            self.log.advance(len(actions))
            self.log.flush()

    def _write_from_outlook(
        self, action: Action, contact: Contact | None, companies: dict[str, list[Contact]]
    ) -> None:
        """Import, update or merge one contact in a savepoint: one the database refuses is logged as
        failed, and the others of the chunk still go in."""
        try:
            with transaction.atomic():
                if action.kind == ActionKind.IMPORT_TO_BC:
                    self._import(action, companies)
                elif action.kind == ActionKind.MERGE:
                    self._take_fields(action, contact, companies)
                else:
                    self._update_bc(action, contact, companies)
        except DatabaseError as error:
            assert action.outlook is not None
            self.log.add(
                contact=contact,
                graph_id=action.graph_id or "",
                email=action.outlook.record["email"],
                direction=Direction.TO_BC,
                action=ACTION_NAMES[action.kind],
                outcome=Outcome.FAILED,
                message=f"{contact_label(contact, action)} could not be saved in Business Central "
                f"(the database refused it: {type(error).__name__}); a Full Sync tries again.",
            )

    def _skip(self, action: Action, contact: Contact | None) -> None:
        if action.outlook is not None and action.link_id is not None:
            ContactLink.objects.filter(pk=action.link_id).update(**_outlook_as_seen(action))
            self.log.add(
                contact=contact,
                graph_id=action.graph_id or "",
                direction=Direction.TO_BC,
                action=ACTION_NAMES[ActionKind.UPDATE_BC],
                outcome=Outcome.SKIPPED,
                message=f"{contact_label(contact, action)} {action.reason}.",
            )
        elif action.outlook is not None:
            self.log.add(
                graph_id=action.graph_id or "",
                email=action.outlook.record["email"],
                direction=Direction.TO_BC,
                action=ACTION_NAMES[ActionKind.IMPORT_TO_BC],
                outcome=Outcome.SKIPPED,
                message=f"Outlook contact '{action.outlook.label}' {action.reason}.",
            )
        else:
            self.log.add(
                contact=contact,
                direction=Direction.TO_M365,
                action=SKIPPED_SEND,
                outcome=Outcome.SKIPPED,
                message=f"{contact_label(contact, action)} {action.reason}.",
            )

    def _import(self, action: Action, companies: dict[str, list[Contact]]) -> None:
        item = action.outlook
        assert item is not None
        # Fields Outlook has no counterpart for take the one value the user's filter pins, if any.
        contact = Contact(type=ContactType.PERSON, **pinned_values(filters=self.setup.contact_filter))
        problems = self._apply_record(contact, item, companies)
        contact.save()
        self._link_to_outlook(action, contact, item, imported=True)
        self.log.add(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_BC,
            action=ACTION_NAMES[action.kind],
            outcome=Outcome.CREATED,
            message=f"Outlook contact '{item.label}' was added to Business Central as "
            f"{contact.no}." + problems_text(problems),
            details=import_details(item, problems),
        )

    def _update_bc(
        self, action: Action, contact: Contact | None, companies: dict[str, list[Contact]]
    ) -> None:
        item = action.outlook
        assert item is not None
        if contact is None:
            return  # deleted meanwhile; the next run removes the Outlook copy
        before = bc_record(contact)
        if record_hash(before) != action.expected_bc_hash:
            self._keep_bc_edit(action, contact, item, before)
            return
        problems = self._apply_record(contact, item, companies, keys=action.from_outlook)
        contact.save()
        self._link_to_outlook(action, contact, item)
        self._log_update(contact, item, before, problems)

    def _log_update(
        self, contact: Contact, item: OutlookContact, before: dict[str, str], problems: list[str]
    ) -> None:
        changes = changed_fields(before, bc_record(contact))
        self.log.add(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_BC,
            action=ACTION_NAMES[ActionKind.UPDATE_BC],
            outcome=Outcome.UPDATED,
            message=f"{contact.no} {contact.name} was updated from Outlook: "
            + (", ".join(caption(key) for key in changes) or "no field changed")
            + "."
            + problems_text(problems),
            details={**import_details(item, problems), "previous_values": changes},
        )

    def _keep_bc_edit(
        self, action: Action, contact: Contact, item: OutlookContact, record: dict[str, str]
    ) -> None:
        """Both sides changed, Business Central during this run: Business Central wins. Its values go
        out next run; Outlook's, which they will replace, are logged now, as the next run's delta will
        not show them again."""
        ContactLink.objects.filter(pk=action.link_id).update(pending=True, change_key=item.change_key)
        overwritten = changed_fields(item.record, record)
        self.log.add(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_M365,
            action=ACTION_NAMES[action.kind],
            outcome=Outcome.SKIPPED,
            message=f"{contact.no} {contact.name} changed on both sides (in Business Central during this "
            "run); Business Central's values win and go to Outlook on the next run, replacing "
            + (overwritten_text(overwritten) or "nothing")
            + ".",
            details={"outlook_values_overwritten": overwritten},
        )

    def _link_to_outlook(
        self, action: Action, contact: Contact, item: OutlookContact, *, imported: bool = False
    ) -> None:
        record = bc_record(contact)
        values = {
            "contact": contact,
            "contact_no": contact.no,
            "email": contact.search_email,
            "graph_id": item.graph_id,
            "change_key": item.change_key,
            "bc_hash": record_hash(record),
            "m365_hash": record_hash(item.record),
            "bc_synced": record,
            "m365_synced": item.record,
            "pending": False,
            "synced_at": timezone.now(),
        }
        if action.link_id is not None:
            ContactLink.objects.filter(pk=action.link_id).update(**values)
        else:
            ContactLink.objects.create(setup=self.setup, imported=imported, **values)

    def _apply_record(
        self,
        contact: Contact,
        item: OutlookContact,
        companies: dict[str, list[Contact]],
        *,
        keys: Iterable[str] | None = None,
    ) -> list[str]:
        """Copy Outlook's values onto the contact field by field (only `keys`, when given), as
        Business Central's transfer does: a value Business Central refuses is left out and named,
        the rest still goes in."""
        problems = list(item.problems)
        record = item.record if keys is None else {k: v for k, v in item.record.items() if k in set(keys)}
        for key in (*TEXT_FIELDS, "name", "email"):
            if key in record:
                setattr(contact, key, record[key])
        if "country_region" in record:
            contact.country_region_id = record["country_region"] or None
        for key in ("phone_no", "mobile_phone_no", "fax_no"):
            if key not in record:
                continue
            try:
                phone_validator(record[key])
                setattr(contact, key, record[key])
            except ValidationError:
                problems.append(f"{caption(key)} '{record[key]}' contains letters; not copied.")
        if normalize_email(contact.email_2) and not is_valid_email(contact.email_2):
            problems.append(f"E-Mail 2 '{contact.email_2}' is not a valid address; not copied.")
            contact.email_2 = ""
        if "company_name" not in record:
            return problems
        name = record["company_name"]
        matches = companies.get(name.casefold(), []) if name else []
        if len(matches) == 1:
            contact.company = matches[0]
        else:
            contact.company = None
            contact.company_name = name
            if len(matches) > 1:
                problems.append(
                    f"The company name '{name}' is not unique in Business Central; Company No. left blank."
                )
        return problems

    def _companies_for(self, actions: list[Action]) -> dict[str, list[Contact]]:
        """The companies named by the actions' Outlook contacts, by lower-case name."""
        return self._companies_named(
            {
                a.outlook.record["company_name"]
                for a in actions
                if a.outlook is not None and a.outlook.record["company_name"]
            }
        )

    def _companies_named(self, names: set[str]) -> dict[str, list[Contact]]:
        found: dict[str, list[Contact]] = {}
        lowered = {n.casefold() for n in names}
        for chunk in chunks(sorted(names), 500):
            for company in Contact.objects.filter(type=ContactType.COMPANY, name__in=chunk):
                found.setdefault(company.name.casefold(), []).append(company)
        return {k: v for k, v in found.items() if k in lowered}


def _outlook_as_seen(action: Action) -> dict[str, Any]:
    """The link fields that record Outlook's copy as seen, for an Outlook edit logged as not synced
    (a contact outside the scope), so the same edit is said once; none without an Outlook copy."""
    if action.outlook is None:
        return {}
    return {
        "m365_hash": record_hash(action.outlook.record),
        "m365_synced": action.outlook.record,
        "change_key": action.outlook.change_key,
    }
