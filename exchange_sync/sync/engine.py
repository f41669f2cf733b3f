"""Run one contact sync: read both sides, plan, apply.

Reads go first (Graph delta, then the database); the pure planner decides; then Graph writes go in
$batch calls of at most 20, up to 4 in flight, and the links, log entries and counts of each batch
are written in one short transaction as the batch lands. No transaction is ever held open across an
HTTP call. A run killed at any moment leaves the watermark and delta link where they were, so the
next run reads the same changes again, and email matching links what the killed run had created.

Given a deadline, a run sends no further $batch once it has passed and raises `SliceEnded` after
recording what landed; the next slice of the run reads and plans again, and the links make it skip
what is already written.

A Sync that finds nothing changed on either side since a run that left nothing to try again stops
after reading Outlook, without reading the links or the scope (`reader.nothing_to_sync`): its cost
does not grow with the folder. A run that writes first clears the setup's `settled_key`, so one stopped
half-way (or ended by its slice's deadline) never lets the next Sync take that shortcut.
"""

from __future__ import annotations

from exchange_sync.graph import GraphClient
from exchange_sync.models import ContactSyncSetup, RunPhase, SyncMode, SyncRun

from .activity_log import RunLog
from .bc_writer import BcWriter
from .outlook_writer import OUTLOOK_KINDS, OutlookWriter
from .planner import ActionKind, MassDeleteBlocked, Plan, plan
from .reader import load_countries, nothing_to_sync, read_outlook, read_plan_input, settings_key


class SliceEnded(Exception):
    """The run's time for this slice is up; what it wrote is recorded, the rest is for the next one."""


class SyncEngine:
    """One run for one user. `execute()` returns the plan it applied (or would apply, in preview)."""

    def __init__(
        self,
        *,
        run: SyncRun,
        setup: ContactSyncSetup,
        client: GraphClient,
        mailbox: str,
        folder_id: str,
        deadline: float | None = None,
    ) -> None:
        """`folder_id` is the folder to read: the setup's, or what a Preview reads instead ("" before
        the folder exists: an empty one). `deadline` (time.monotonic()): when to stop sending."""
        self.run = run
        self.setup = setup
        self.client = client
        self.mailbox = mailbox
        self.folder_id = folder_id
        self.countries = load_countries()
        self.log = RunLog(run=run, setup=setup, requests_sent=lambda: client.requests_sent)
        self.outlook_writer = OutlookWriter(
            setup=setup,
            client=client,
            mailbox=mailbox,
            countries=self.countries,
            log=self.log,
            deadline=deadline,
        )
        self.bc_writer = BcWriter(setup=setup, log=self.log)
        self.delta_link = ""  # Outlook's sync point after this run, once execute() has read it

    def execute(self) -> Plan:
        full = self.run.mode == SyncMode.FULL
        outlook = read_outlook(
            client=self.client,
            setup=self.setup,
            mailbox=self.mailbox,
            folder_id=self.folder_id,
            countries=self.countries,
            log=self.log,
            from_scratch=full or not self.setup.delta_link,
        )
        if self.run.mode == SyncMode.SYNC and nothing_to_sync(setup=self.setup, outlook=outlook):
            self.delta_link = outlook.delta_link
            return Plan(actions=[], folder_size=0)
        self.log.start_phase(RunPhase.PLANNING)
        plan_input, self.log.deleted_nos = read_plan_input(
            setup=self.setup, run=self.run, outlook=outlook, full=full or outlook.whole_folder
        )
        self.bc_writer.kept_imported = frozenset(plan_input.kept_imported)
        the_plan = plan(plan_input)
        if self.run.mode == SyncMode.PREVIEW:
            self.log.preview(the_plan)
        elif the_plan.blocked:
            raise MassDeleteBlocked(the_plan.blocked)
        else:
            if the_plan.actions:
                ContactSyncSetup.objects.filter(pk=self.setup.pk).update(settled_key="")
            self.outlook_writer.refresh_change_keys(outlook.change_keys)
            self.apply(the_plan)
            self.flush()  # what reading logged (an expired delta link) when the plan had nothing to write
        self.delta_link = outlook.delta_link
        return the_plan

    def apply(self, the_plan: Plan) -> None:
        """Outlook's side first, then Business Central's; except that the Outlook fields a merge keeps
        go to Business Central before it, so that Business Central's values sent to Outlook hold them."""
        outlook_actions = [a for a in the_plan.actions if a.kind in OUTLOOK_KINDS]
        bc_actions = [a for a in the_plan.actions if a.kind not in OUTLOOK_KINDS]
        self.log.start_phase(RunPhase.WRITING_OUTLOOK, total=len(outlook_actions))
        self.bc_writer.take_outlook_fields([a for a in outlook_actions if a.kind == ActionKind.MERGE])
        self.outlook_writer.apply(outlook_actions)
        if self.outlook_writer.stopped:
            self.flush()
            raise SliceEnded()
        self.log.start_phase(RunPhase.WRITING_BC, total=len(bc_actions))
        self.bc_writer.apply(bc_actions)

    def flush(self) -> None:
        """Write the link changes, log entries and counts so far, and prove the run is alive (heartbeat)."""
        self.outlook_writer.flush_links()
        self.log.flush()

    def settled_key(self) -> str:
        """What the setup's `settled_key` becomes when this run succeeds: its settings' fingerprint if
        nothing failed or was skipped (a skip may recur, as a contact sharing a synced email does)."""
        if self.log.tally["failed"] or self.log.tally["skipped"]:
            return ""
        return settings_key(setup=self.setup)

    def counts(self) -> dict[str, int]:
        return self.log.counts()
