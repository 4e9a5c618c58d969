"""Server storage behind one interface, on SQLite (embedded default) or PostgreSQL.

``Store`` (store.py) is what handlers call; it runs operations written once as engine-free
transactions (sql.py) from one module per concern: ``accounts`` (and devices), ``keys``, ``queues``,
``groups``, ``media``. The backend comes from the database URL (backend.py): ``sqlite.py`` or
``postgres.py``, imported only when used. ``schema.py`` holds the versioned migrations and
``copy.py`` copies one database into another (``lockstep db copy``).
"""

from lockstep.server.store.backend import DatabaseUrlError, StoreBackend, backend_for, redact, sqlite_url
from lockstep.server.store.records import (
    AccountRecord,
    Audience,
    ClaimedKeys,
    Conversation,
    Delivery,
    DeviceListChange,
    DeviceRecord,
    GroupRecord,
    MediaQuota,
    MediaUsage,
    QueuedMessage,
    StrangerLimits,
)
from lockstep.server.store.schema import SchemaTooNew
from lockstep.server.store.store import Store

__all__ = [
    "AccountRecord",
    "Audience",
    "ClaimedKeys",
    "Conversation",
    "DatabaseUrlError",
    "Delivery",
    "DeviceListChange",
    "DeviceRecord",
    "GroupRecord",
    "MediaQuota",
    "MediaUsage",
    "QueuedMessage",
    "SchemaTooNew",
    "Store",
    "StoreBackend",
    "StrangerLimits",
    "backend_for",
    "redact",
    "sqlite_url",
]
