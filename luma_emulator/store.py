"""The emulator's own storage: one SQLite file and a files/ folder under its data directory.

Several processes (a web process and a worker, each with an in-process emulator) share one data
directory, so every call opens its own short-lived connection, the database runs in WAL mode
with a generous busy timeout, and every change that two processes could race on is a single
conditional UPDATE.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    dialect TEXT NOT NULL,
    created_at REAL NOT NULL,
    dream_seconds REAL NOT NULL,
    base_url TEXT NOT NULL,
    spec TEXT NOT NULL,
    canonical TEXT NOT NULL,
    duplicate INTEGER NOT NULL DEFAULT 0,
    callback_url TEXT,
    cost_cents REAL NOT NULL DEFAULT 0,
    fail_at REAL,
    failure_reason TEXT,
    stuck INTEGER NOT NULL DEFAULT 0,
    forget_at REAL,
    hide_video_polls INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    render_state TEXT NOT NULL DEFAULT 'pending',
    render_owner TEXT,
    render_claimed_at REAL,
    width INTEGER,
    height INTEGER,
    video_duration REAL,
    notified TEXT NOT NULL DEFAULT '',
    notify_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS generations_account ON generations (account, created_at);
CREATE INDEX IF NOT EXISTS generations_canonical ON generations (canonical);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# A generation is in flight until it completes or fails; a stuck one never completes.
IN_FLIGHT = """
    deleted = 0
    AND NOT (fail_at IS NOT NULL AND fail_at <= :now)
    AND (stuck = 1 OR created_at + dream_seconds > :now)
    AND NOT (forget_at IS NOT NULL AND forget_at <= :now)
"""


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "emulator.sqlite3"
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def insert(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        with self.connect() as db:
            db.execute(f"INSERT INTO generations ({columns}) VALUES ({marks})", row)  # noqa: S608

    def insert_unless_duplicate(self, row: dict[str, Any]) -> bool:
        """Insert; True when an earlier create had the same canonical request."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                seen = db.execute(
                    "SELECT 1 FROM generations WHERE canonical = ? LIMIT 1", (row["canonical"],)
                ).fetchone()
                row = {**row, "duplicate": int(seen is not None)}
                columns = ", ".join(row)
                marks = ", ".join(f":{name}" for name in row)
                db.execute(f"INSERT INTO generations ({columns}) VALUES ({marks})", row)  # noqa: S608
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return seen is not None

    def get(self, generation_id: str) -> dict[str, Any] | None:
        with self.connect() as db:
            found = db.execute(
                "SELECT * FROM generations WHERE id = ?", (generation_id,)
            ).fetchone()
        return _row(found)

    def update(
        self,
        generation_id: str,
        where: str = "1",
        params: dict[str, Any] | None = None,
        **values: Any,
    ) -> int:
        """UPDATE one generation if `where` (SQL over its columns and `params`) holds; the
        number of rows changed, so 0 tells the caller another process got there first."""
        sets = ", ".join(f"{name} = :{name}" for name in values)
        with self.connect() as db:
            cursor = db.execute(
                f"UPDATE generations SET {sets} WHERE id = :_id AND ({where})",  # noqa: S608
                {**(params or {}), **values, "_id": generation_id},
            )
            return cursor.rowcount

    def execute(self, sql: str, params: dict[str, Any] | tuple = ()) -> int:
        with self.connect() as db:
            return db.execute(sql, params).rowcount

    def select(self, sql: str, params: dict[str, Any] | tuple = ()) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [_row(found) for found in db.execute(sql, params).fetchall()]

    def scalar(self, sql: str, params: dict[str, Any] | tuple = ()) -> Any:
        with self.connect() as db:
            found = db.execute(sql, params).fetchone()
        return None if found is None else found[0]

    def in_flight(self, account: str, now: float) -> list[dict[str, Any]]:
        return self.select(
            f"SELECT * FROM generations WHERE account = :account AND {IN_FLIGHT}",  # noqa: S608
            {"account": account, "now": now},
        )

    def incr(self, name: str, by: int = 1) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counters(self) -> dict[str, int]:
        with self.connect() as db:
            return {r["name"]: r["value"] for r in db.execute("SELECT * FROM counters")}

    def reset(self) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM generations")
            db.execute("DELETE FROM counters")
        for path in self.files_dir.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


def _row(found: sqlite3.Row | None) -> dict[str, Any] | None:
    if found is None:
        return None
    row = dict(found)
    if "spec" in row:
        row["spec"] = json.loads(row["spec"])
    return row
