"""Django's SQLite backend, except that a database file is switched to WAL once, not on every connection.

`PRAGMA journal_mode=WAL` run on each new connection (as an init_command) failed with "database is
locked" at connect while another process was writing, whatever the busy timeout: the crash soak,
which runs syncs in child processes next to its own writes, hit it. The journal mode is kept in the
file, so a new connection only reads it, which waits for the busy timeout like any read."""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
        return connection
