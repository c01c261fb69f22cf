"""The batch-job ledger: which provider batch holds which lines, beside the response cache.

One SQLite file (default ``batches.sqlite`` next to ``responses.sqlite``). A submission is written
in two steps: ``reserve`` records the lines and a fresh token *before* the provider is asked to
create the batch, ``attach`` adds the batch id once it is known. A run killed at any moment
therefore leaves either a batch id to re-attach to, or a token by which the provider's batch list
finds the batch whose creation answer was lost: no line is ever submitted twice while its batch is
open. A job is closed once its results are read (answers in the cache, failed lines resubmitted or
counted).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lmms_eval_autorater.kvstore import _set_wal


@dataclass
class Job:
    """One submitted (or reserved) batch: its lines, the retry round it belongs to, and its ids."""

    token: str
    scope: str
    custom_ids: tuple[str, ...]
    attempt: int = 0
    batch_id: str | None = None
    input_file: str | None = None
    created: float = 0.0

    @property
    def ids_digest(self) -> str:
        """SHA-256 of the sorted custom_ids: the set of lines this job stands for."""
        return hashlib.sha256("\n".join(sorted(self.custom_ids)).encode()).hexdigest()


class JobLedger:
    """Open and closed batch jobs per scope (protocol, endpoint, model), looked up by custom_id."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._con()
        con.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (
                token TEXT PRIMARY KEY, scope TEXT NOT NULL, batch_id TEXT, input_file TEXT,
                attempt INTEGER NOT NULL, ids_digest TEXT NOT NULL, n_lines INTEGER NOT NULL,
                open INTEGER NOT NULL DEFAULT 1, outcome TEXT, created REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS job_lines (
                token TEXT NOT NULL, custom_id TEXT NOT NULL, PRIMARY KEY (token, custom_id));
            CREATE INDEX IF NOT EXISTS job_lines_by_id ON job_lines (custom_id);
            """
        )

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            _set_wal(con)
            self._local.con = con
        return con

    def reserve(self, scope: str, custom_ids: Iterable[str], attempt: int) -> Job:
        """Record the lines of a batch about to be created, under a fresh token (committed at once)."""
        job = Job(uuid.uuid4().hex, scope, tuple(custom_ids), attempt, created=time.time())
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "INSERT INTO jobs (token, scope, attempt, ids_digest, n_lines, created) VALUES (?,?,?,?,?,?)",
                (job.token, scope, attempt, job.ids_digest, len(job.custom_ids), job.created),
            )
            con.executemany(
                "INSERT OR IGNORE INTO job_lines (token, custom_id) VALUES (?, ?)",
                [(job.token, c) for c in job.custom_ids],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return job

    def attach(self, job: Job, batch_id: str, input_file: str | None = None) -> None:
        """Record the provider's batch id (and input file) of a reserved job."""
        job.batch_id, job.input_file = batch_id, input_file
        self._con().execute(
            "UPDATE jobs SET batch_id=?, input_file=? WHERE token=?", (batch_id, input_file, job.token)
        )

    def close(self, job: Job, outcome: str) -> None:
        """Mark a job read (or never created); its lines are no longer covered by it."""
        self._con().execute("UPDATE jobs SET open=0, outcome=? WHERE token=?", (outcome, job.token))

    def open_jobs(self, scope: str, custom_ids: Iterable[str]) -> list[Job]:
        """The open jobs of ``scope`` that hold any of ``custom_ids``, oldest first, with all their lines."""
        ids = list(dict.fromkeys(custom_ids))
        con = self._con()
        tokens: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = con.execute(
                f"SELECT DISTINCT j.token FROM job_lines l JOIN jobs j ON j.token = l.token "
                f"WHERE j.open = 1 AND j.scope = ? AND l.custom_id IN ({marks})",
                [scope, *chunk],
            )
            tokens.update(r[0] for r in rows)
        jobs = []
        for token in tokens:
            row = con.execute(
                "SELECT scope, batch_id, input_file, attempt, created FROM jobs WHERE token=?", (token,)
            ).fetchone()
            lines = [r[0] for r in con.execute("SELECT custom_id FROM job_lines WHERE token=?", (token,))]
            jobs.append(Job(token, row[0], tuple(lines), int(row[3]), row[1], row[2], float(row[4])))
        return sorted(jobs, key=lambda j: j.created)

    def counts(self) -> dict[str, int]:
        """Jobs recorded, open and closed (for tests and logs)."""
        con = self._con()
        total, still_open = con.execute("SELECT COUNT(*), COALESCE(SUM(open), 0) FROM jobs").fetchone()
        return {"jobs": int(total), "open": int(still_open), "closed": int(total) - int(still_open)}
