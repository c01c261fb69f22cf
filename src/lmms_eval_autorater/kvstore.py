"""A small content-addressed key-value store on SQLite, shared by the response and assessment caches.

One file, WAL journal, one transaction per write: a process killed at any moment leaves
every committed answer readable and nothing half-written. Safe across threads (one
connection per thread) and across processes (SQLite locking).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import CacheError


def content_key(*parts: object) -> str:
    """SHA-256 over a canonical JSON encoding of ``parts``: equal content, equal key."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_dir() -> Path:
    """``$AUTORATER_CACHE_DIR`` or ``~/.cache/lmms_eval_autorater``."""
    env = os.environ.get("AUTORATER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lmms_eval_autorater"


def _set_wal(con: sqlite3.Connection, wait: float = 60.0) -> None:
    """Switch to WAL. Switching needs a moment of exclusive access and SQLite answers "database is
    locked" at once (no busy wait) when another process opens the same new file at that instant, as
    ranks of a data-parallel run do; so retry for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _unusable(exc: sqlite3.Error) -> bool:
    """A damaged file, or one that is not a database (not a lock or a busy disk: those are weather)."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError):
        return any(w in text for w in ("malformed", "not a database", "unable to open", "disk i/o"))
    return isinstance(exc, sqlite3.DatabaseError)


@contextmanager
def _named(path: str):
    """Turn a SQLite error that says the file is unusable into ``CacheError`` naming the file and the remedy."""
    try:
        yield
    except sqlite3.Error as exc:
        if not _unusable(exc):
            raise
        raise CacheError(
            f"cache file {path} cannot be used ({exc}): it is damaged or not a SQLite database; move or "
            "delete it (a fresh cache is made and its answers are asked again), or pass cache_dir= elsewhere"
        ) from None


_BAD = object()


def _loads(text: str) -> Any:
    """A stored JSON value, or ``_BAD`` for a row that is not JSON (damaged): read as absent."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return _BAD


class SqliteStore:
    """Key -> JSON value table in one SQLite file; a file that cannot be opened or read raises
    ``errors.CacheError`` naming it."""

    def __init__(self, path: str | os.PathLike, table: str = "kv") -> None:
        if not table.isidentifier():
            raise ValueError(f"invalid table name {table!r}")
        self.path = str(path)
        self.table = table
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        #: rows read that were not JSON (damaged): treated as absent
        self.undecodable = 0
        with _named(self.path):
            con = self._con()
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                "created REAL DEFAULT (julianday('now')))"
            )
            con.commit()
            con.execute(f"SELECT key, value FROM {table} LIMIT 1").fetchall()

    def _do(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with _named(self.path):
            return fn(self._con())

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            _set_wal(con)
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def get(self, key: str):
        """The stored value, or None."""
        row = self._do(lambda c: c.execute(f"SELECT value FROM {self.table} WHERE key=?", (key,)).fetchone())
        value = _BAD if row is None else _loads(row[0])
        if value is _BAD and row is not None:
            self.undecodable += 1
        return None if value is _BAD else value

    def get_many(self, keys: Iterable[str]) -> dict:
        """Values for the keys present (absent keys are left out)."""
        keys = list(dict.fromkeys(keys))
        out: dict = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM {self.table} WHERE key IN ({marks})"
            for k, v in self._do(lambda c, sql=sql, chunk=chunk: c.execute(sql, chunk).fetchall()):
                value = _loads(v)
                if value is _BAD:
                    self.undecodable += 1  # a damaged row reads as absent: the caller asks again
                else:
                    out[k] = value
        return out

    def put(self, key: str, value) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``, committed at once."""
        self.put_many({key: value})

    def put_many(self, items: dict) -> None:
        """Store several values in one transaction."""
        if not items:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with _named(self.path):
            con = self._con()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(f"INSERT OR REPLACE INTO {self.table} (key, value) VALUES (?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        return self._do(lambda c: c.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        return (
            self._do(lambda c: c.execute(f"SELECT 1 FROM {self.table} WHERE key=?", (key,)).fetchone())
            is not None
        )
