"""SQLite (WAL) content-hash cache of finished calls: the reason paid work is never lost.

The key is a hash of everything that decides the answer (backend, model, messages, images,
temperature, max tokens, seed) and nothing else, so a rerun of the same command, after a
crash, Ctrl-C or ``kill -9``, finds every call it already paid for. Each completion is
committed the moment it arrives; with WAL and ``synchronous=NORMAL`` a committed row survives
the process being killed (a power cut may lose the last few).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

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

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Completion)


def request_key(backend: str, request: ChatRequest) -> str:
    """Content hash of what determines the answer; ids and metadata are left out on purpose."""
    payload = {
        "v": CACHE_VERSION,
        "backend": backend,
        "messages": [(m.role, m.content) for m in request.messages],
        "images": list(request.images),
        # 1 and 1.0 are one temperature (a YAML config gives an int, a decoded request a float).
        "temperature": None if request.temperature is None else float(request.temperature),
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }
    return hashlib.sha256(_encoder.encode(payload)).hexdigest()


class Cache:
    """A completion store shared by all workers of one process (and safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """Look up many keys at once (one query per 500) before a run starts."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        with self._lock:
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
        blob = _encoder.encode(msgspec.structs.replace(completion, cached=False))
        with self._lock:
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

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def total_cost(self) -> float:
        with self._lock:
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
