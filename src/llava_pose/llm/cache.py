"""SQLite (WAL) content-hash cache of finished calls: the reason paid work is never lost.

The key is a hash of everything that decides the answer (backend, model, messages, images,
temperature, max tokens, seed) and nothing else, so a rerun of the same command, after a
crash, Ctrl-C or ``kill -9``, finds every call it already paid for. An image enters it by its
content (sha256 of the file), not its path: a COCO root moved or mounted elsewhere still finds
its replies, and a file changed in place is asked again rather than answered for the old one.
Each completion is committed the moment it arrives; with WAL and ``synchronous=NORMAL`` a
committed row survives the process being killed (a power cut may lose the last few).

Batch mode keeps its bookkeeping in the same file (`llava_pose.llm.batch`): one row per
submission (``batch_submissions``) and one per request in it (``batch_items``), each step
committed before the next is taken, so a killed process never loses a submitted batch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from ..errors import CacheError
from ..records import ChatRequest, Completion

CACHE_VERSION = "llava-pose-cache-v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    request_id TEXT NOT NULL,
    completion BLOB NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    created REAL NOT NULL
)
"""

# A submission's state: preparing (intent recorded; upload or create may have happened without
# being recorded) -> open (the provider has the batch) -> collected (its results are in) or
# abandoned (never reached the provider; its requests are free to go again).
_BATCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_submissions (
    sub_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    base_url TEXT,
    created REAL NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    file_id TEXT,
    batch_id TEXT,
    state TEXT NOT NULL,
    status TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_items (
    sub_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome TEXT,
    reason TEXT,
    PRIMARY KEY (sub_id, key)
);
CREATE INDEX IF NOT EXISTS batch_items_key ON batch_items (key);
"""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Completion)


@functools.lru_cache(maxsize=1 << 17)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def image_identity(path: str) -> str:
    """What names an image in a key: the sha256 of its bytes (read once per path, size and
    modification time in a process: the three requests of one image read it once). A file
    that cannot be read keeps its path, so the key is still made and the call itself says
    what is wrong with the file."""
    try:
        st = os.stat(path)
        return "sha256:" + _file_sha256(path, st.st_size, st.st_mtime_ns)
    except OSError:
        return "path:" + path


def request_key(backend: str, request: ChatRequest) -> str:
    """Content hash of what determines the answer; ids and metadata are left out on purpose,
    and so are image paths (`image_identity`: an image counts by its bytes)."""
    payload = {
        "v": CACHE_VERSION,
        "backend": backend,
        "messages": [(m.role, m.content) for m in request.messages],
        "images": [image_identity(p) for p in request.images],
        # 1 and 1.0 are one temperature (a YAML config gives an int, a decoded request a float).
        "temperature": None if request.temperature is None else float(request.temperature),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }
    # How images are sent changes what the model sees; keys of requests without them stay
    # what they were before these existed.
    if request.image_detail is not None:
        payload["image_detail"] = request.image_detail
    if request.image_max_side is not None:
        payload["image_max_side"] = request.image_max_side
    return hashlib.sha256(_encoder.encode(payload)).hexdigest()


# The columns of a table this code made; a table of that name with others is someone else's.
_COLUMNS = {
    "completions": (
        "key", "backend", "request_id", "completion", "input_tokens", "output_tokens", "cost",
        "created",
    ),
    "batch_submissions": (
        "sub_id", "backend", "base_url", "created", "requests", "bytes", "file_id", "batch_id",
        "state", "status", "updated",
    ),
    "batch_items": ("sub_id", "key", "request_id", "outcome", "reason"),
}  # fmt: skip


def foreign_tables(tables: dict[str, tuple[str, ...]]) -> str | None:
    """Why a database with these tables (name -> columns) is not a llava-pose cache, or None.
    Pure. An empty database is one (the schema is made); ours with extra tables is not."""
    if not tables:
        return None
    if "completions" not in tables:
        return f"holds other tables ({', '.join(sorted(tables)[:3])}), not a llava-pose cache"
    for name, columns in _COLUMNS.items():
        if name in tables and tables[name] != columns:
            return f"its {name} table has other columns than a llava-pose cache's"
    return None


class Cache:
    """A completion store shared by all workers of one process (and safe across processes).

    A file that is not a cache (a directory, a truncated or non-SQLite file, someone else's
    database) is a `CacheError` at open, naming it; a write that fails during a run (a full
    disk) is one too, and the run stops rather than pay for calls it cannot keep."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise CacheError(self.path, "is a directory, not a cache file: give --cache a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._errors("open"):
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            try:
                tables = {
                    name: tuple(c[1] for c in self._db.execute(f"PRAGMA table_info('{name}')"))
                    for (name,) in self._db.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                }
                problem = foreign_tables(tables)
                if problem is not None:
                    raise CacheError(self.path, f"{problem}: give --cache (or --out) another place")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                self._db.executescript(_BATCH_SCHEMA)
            except BaseException:
                self._db.close()
                raise

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite's errors as one line naming the file: at open, a file that is not a cache;
        later, a write the disk refuses (the run then stops: a call that cannot be kept must
        not be paid for again and again)."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if doing == "open" and not isinstance(e, sqlite3.OperationalError):
                raise CacheError(
                    self.path,
                    f"cannot be read as a llava-pose cache ({e}): move it aside, or give "
                    "--cache (or --out) another place",
                ) from None
            if doing == "open":
                raise CacheError(
                    self.path,
                    f"cannot open the cache ({e}): it needs a writable disk with free space",
                ) from None
            raise CacheError(
                self.path,
                f"cannot {doing} the cache ({e}); the run stops here. Free space (or fix the "
                "file's permissions) and rerun: every call kept so far is reused",
            ) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """Look up many keys at once (one query per 500) before a run starts."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        with self._lock, self._errors("read"):
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, completion FROM completions WHERE key IN ({marks})", chunk
                )
                for key, blob in rows:
                    found[key] = msgspec.structs.replace(_decoder.decode(blob), cached=True)
        return found

    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def put(
        self, key: str, backend: str, request_id: str, completion: Completion, cost: float
    ) -> None:
        """Commit one finished call at once."""
        with self._lock, self._errors("write to"):
            self._put(key, backend, request_id, completion, cost)

    def _put(
        self, key: str, backend: str, request_id: str, completion: Completion, cost: float
    ) -> None:
        blob = _encoder.encode(msgspec.structs.replace(completion, cached=False))
        self._db.execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                backend,
                request_id,
                blob,
                completion.input_tokens,
                completion.output_tokens,
                cost,
                time.time(),
            ),
        )

    # -- batch bookkeeping (see llava_pose.llm.batch) -------------------------------------------

    def batch_intent(
        self,
        sub_id: str,
        backend: str,
        base_url: str | None,
        items: list[tuple[str, str]],
        size: int,
    ) -> None:
        """Record a submission and its (key, request id) items in one transaction, before
        anything is sent: from here on its requests are not sent again by another submission."""
        now = time.time()
        with self._lock, self._errors("write to"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO batch_submissions VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, "
                    "'preparing', NULL, ?)",
                    (sub_id, backend, base_url, now, len(items), size, now),
                )
                self._db.executemany(
                    "INSERT INTO batch_items VALUES (?, ?, ?, NULL, NULL)",
                    [(sub_id, key, rid) for key, rid in items],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def batch_update(self, sub_id: str, **fields: object) -> None:
        """Commit one step of a submission (file_id, batch_id, state, status) at once."""
        names = sorted(fields)
        sets = ", ".join(f"{n} = ?" for n in names)
        with self._lock, self._errors("write to"):
            self._db.execute(
                f"UPDATE batch_submissions SET {sets}, updated = ? WHERE sub_id = ?",
                [fields[n] for n in names] + [time.time(), sub_id],
            )

    def batch_submissions(self, states: Iterable[str] | None = None) -> list[dict[str, object]]:
        """Submissions, oldest first; only those in `states` when given."""
        query = "SELECT * FROM batch_submissions"
        args: list[str] = []
        if states is not None:
            args = list(states)
            query += f" WHERE state IN ({','.join('?' * len(args))})"
        with self._lock, self._errors("read"):
            cur = self._db.execute(query + " ORDER BY created, sub_id", args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur]

    def batch_items(self, sub_id: str) -> list[tuple[str, str, str | None, str | None]]:
        """(key, request id, outcome, reason) of one submission's requests."""
        with self._lock, self._errors("read"):
            return list(
                self._db.execute(
                    "SELECT key, request_id, outcome, reason FROM batch_items WHERE sub_id = ?",
                    (sub_id,),
                )
            )

    def batch_history(
        self, keys: Iterable[str]
    ) -> dict[str, list[tuple[str, str | None, str | None]]]:
        """Per key: (state of its submission, outcome, reason) of every submission holding it."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, list[tuple[str, str | None, str | None]]] = {}
        with self._lock, self._errors("read"):
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = self._db.execute(
                    "SELECT i.key, s.state, i.outcome, i.reason FROM batch_items i "
                    "JOIN batch_submissions s ON s.sub_id = i.sub_id "
                    f"WHERE i.key IN ({','.join('?' * len(chunk))}) ORDER BY s.created",
                    chunk,
                )
                for key, state, outcome, reason in rows:
                    out.setdefault(key, []).append((state, outcome, reason))
        return out

    def batch_collect(
        self,
        sub_id: str,
        backend: str,
        done: list[tuple[str, str, Completion, float]],
        outcomes: dict[str, tuple[str, str | None]],
        status: str,
    ) -> None:
        """Store a finished batch in one transaction: its completions (key, request id,
        completion, cost) into the cache, every item's outcome, and the submission collected."""
        with self._lock, self._errors("write to"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key, rid, completion, cost in done:
                    self._put(key, backend, rid, completion, cost)
                self._db.executemany(
                    "UPDATE batch_items SET outcome = ?, reason = ? WHERE sub_id = ? AND key = ?",
                    [(o, r, sub_id, k) for k, (o, r) in outcomes.items()],
                )
                self._db.execute(
                    "UPDATE batch_submissions SET state = 'collected', status = ?, updated = ? "
                    "WHERE sub_id = ?",
                    (status, time.time(), sub_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock, self._errors("read"):
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def total_cost(self) -> float:
        with self._lock, self._errors("read"):
            return float(
                self._db.execute("SELECT COALESCE(SUM(cost), 0) FROM completions").fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
