"""The Business Central half of a plan: imports and updates from Outlook, stopping and dropping links,
and skips. Each chunk is written under row lock in one transaction with its log entries."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone

from contacts.models import Contact, ContactType, normalize_email, phone_validator
from exchange_sync.models import ContactLink, ContactSyncSetup, Direction, Outcome

from .activity_log import (
    ACTION_NAMES,
    DB_CHUNK,
    SKIPPED_SEND,
    RunLog,
    caption,
    contact_label,
    import_details,
    overwritten_text,
    problems_text,
)
from .mapping import OutlookContact, bc_record, changed_fields, is_valid_email, record_hash
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

    def apply(self, actions: list[Action]) -> None:
        for chunk in chunks(actions, DB_CHUNK):
            self._apply_chunk(chunk)

    def _apply_chunk(self, actions: list[Action]) -> None:
        contact_ids = [a.contact_id for a in actions if a.contact_id is not None]
        companies = self._companies_named(
            {
                a.outlook.record["company_name"]
                for a in actions
                if a.outlook is not None and a.outlook.record["company_name"]
            }
        )
        with transaction.atomic():
            # Read under lock in the writing transaction: an edit made since the plan is either
            # seen here (and kept) or waits for this transaction, never lost in between.
            contacts = Contact.objects.select_for_update().in_bulk(contact_ids)
            for action in actions:
                contact = contacts.get(action.contact_id) if action.contact_id is not None else None
                if action.kind in (ActionKind.IMPORT_TO_BC, ActionKind.UPDATE_BC):
                    self._write_from_outlook(action, contact, companies)
                elif action.kind == ActionKind.DETACH:
                    ContactLink.objects.filter(pk=action.link_id).update(detached=True)
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
                elif action.kind == ActionKind.SKIP:
                    self._skip(action, contact)
            self.log.flush()

    def _write_from_outlook(
        self, action: Action, contact: Contact | None, companies: dict[str, list[Contact]]
    ) -> None:
        """Import or update one contact in a savepoint: one the database refuses is logged as failed,
        and the others of the chunk still go in."""
        try:
            with transaction.atomic():
                if action.kind == ActionKind.IMPORT_TO_BC:
                    self._import(action, companies)
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
        if action.outlook is not None:
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
        contact = Contact(type=ContactType.PERSON)
        problems = self._apply_record(contact, item, companies)
        contact.save()
        self._link_to_outlook(action, contact, item)
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
        problems = self._apply_record(contact, item, companies)
        contact.save()
        self._link_to_outlook(action, contact, item)
        changes = changed_fields(before, bc_record(contact))
        self.log.add(
            contact=contact,
            graph_id=item.graph_id,
            direction=Direction.TO_BC,
            action=ACTION_NAMES[action.kind],
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

    def _link_to_outlook(self, action: Action, contact: Contact, item: OutlookContact) -> None:
        values = {
            "contact": contact,
            "contact_no": contact.no,
            "email": contact.search_email,
            "graph_id": item.graph_id,
            "change_key": item.change_key,
            "bc_hash": record_hash(bc_record(contact)),
            "m365_hash": record_hash(item.record),
            "pending": False,
            "synced_at": timezone.now(),
        }
        if action.link_id is not None:
            ContactLink.objects.filter(pk=action.link_id).update(**values)
        else:
            ContactLink.objects.create(setup=self.setup, **values)

    def _apply_record(
        self, contact: Contact, item: OutlookContact, companies: dict[str, list[Contact]]
    ) -> list[str]:
        """Copy Outlook's values onto the contact field by field, as Business Central's transfer
        does: a value Business Central refuses is left out and named, the rest still goes in."""
        problems = list(item.problems)
        record = item.record
        for key in TEXT_FIELDS:
            setattr(contact, key, record[key])
        contact.name = record["name"]
        contact.email = record["email"]
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

    def _companies_named(self, names: set[str]) -> dict[str, list[Contact]]:
        found: dict[str, list[Contact]] = {}
        lowered = {n.casefold() for n in names}
        for chunk in chunks(sorted(names), 500):
            for company in Contact.objects.filter(type=ContactType.COMPANY, name__in=chunk):
                found.setdefault(company.name.casefold(), []).append(company)
        return {k: v for k, v in found.items() if k in lowered}
