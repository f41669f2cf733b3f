"""Microsoft 365 sync state per user, after Business Central's pages and tables, one module per
family: setups (User Card, Exchange Sync Setup 6700, Contact Sync Setup, links), runs (Sync Runs,
Activity Log 710, incidents), job_queue (Job Queue Entry 472) and live (Graph subscriptions)."""

from .budget import MailboxBudget
from .connections import M365Connection, M365ConnectionStatus
from .job_queue import (
    CodeunitId,
    JobQueueEntry,
    JobStatus,
    ObjectType,
)
from .live import GraphSubscription, SubscriptionStatus, UnconfirmedChange
from .runs import (
    ActivityLog,
    ActivityLogQuerySet,
    Direction,
    IncidentKind,
    Outcome,
    RunPhase,
    RunStatus,
    SyncIncident,
    SyncMode,
    SyncRun,
    SyncTrigger,
)
from .setups import (
    DEFAULT_FOLDER_NAME,
    FOLDER_NAME_MAX_LENGTH,
    FOLDER_NAME_REFUSED,
    ConnectionStatus,
    ContactLink,
    ContactSyncSetup,
    ContactSyncSetupManager,
    ExchangeSyncSetup,
    ExistingFolderPolicy,
    OutOfScopePolicy,
    SyncHealth,
    UserCard,
    validate_folder_name,
)

__all__ = [
    "DEFAULT_FOLDER_NAME",
    "FOLDER_NAME_MAX_LENGTH",
    "FOLDER_NAME_REFUSED",
    "ActivityLog",
    "ActivityLogQuerySet",
    "CodeunitId",
    "ConnectionStatus",
    "ContactLink",
    "ContactSyncSetup",
    "ContactSyncSetupManager",
    "Direction",
    "ExchangeSyncSetup",
    "ExistingFolderPolicy",
    "GraphSubscription",
    "IncidentKind",
    "JobQueueEntry",
    "JobStatus",
    "M365Connection",
    "M365ConnectionStatus",
    "MailboxBudget",
    "ObjectType",
    "OutOfScopePolicy",
    "Outcome",
    "RunPhase",
    "RunStatus",
    "SubscriptionStatus",
    "SyncHealth",
    "SyncIncident",
    "SyncMode",
    "SyncRun",
    "SyncTrigger",
    "UnconfirmedChange",
    "UserCard",
    "validate_folder_name",
]
