"""One storage interface, two engines: what the storage service serves, and how it picks an engine.

:class:`Storage` is the contract both engines keep: reads from one snapshot, atomic and durable
commits that give each written key a version higher than any before it, watches that wake on
change, and queues whose sequence numbers only grow. SQLite (:mod:`cloister.storage.sqlite`) is
the embedded default; PostgreSQL (:mod:`cloister.storage.postgres`) serves several storage
replicas over one database.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cloister.errors import ConfigurationError
from cloister.storage.ops import Op, OpResult, QueueItem, Versioned

if TYPE_CHECKING:
    from cloister.config import Settings
    from cloister.crypto.sealing import Sealer


class Storage(Protocol):
    """A sealed key-value store with versions, watches and queues.

    Every value is sealed before it reaches the engine's database, so whoever runs the database
    learns keys and sizes but no value. Implementations raise
    :class:`~cloister.errors.ConflictError` for a failed :class:`~cloister.storage.ops.Check`,
    :class:`~cloister.errors.NotFoundError` for a Dequeue of an empty queue,
    :class:`~cloister.errors.DiskFullError` when the database has no room, and
    :class:`~cloister.errors.UnavailableError` when it cannot be reached.
    """

    async def start(self) -> None:
        """Open the database (creating or migrating its schema); call once before anything else."""

    async def close(self) -> None:
        """Finish pending commits and release the database."""

    async def get(self, key: bytes) -> Versioned | None: ...

    async def read(self, keys: Sequence[bytes]) -> list[Versioned | None]:
        """The values of ``keys``, in order, all from one snapshot."""
        ...

    async def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Keys starting with ``prefix + b"-"``, in byte order."""
        ...

    async def queue_items(self, name: bytes, after_seq: int, limit: int) -> list[QueueItem]:
        """Up to ``limit`` elements of queue ``name`` numbered above ``after_seq``, oldest first."""
        ...

    async def commit(self, ops: Sequence[Op]) -> list[OpResult]:
        """Apply ``ops`` atomically and durably; one :data:`~cloister.storage.ops.OpResult` per op."""
        ...

    async def watch(self, key: bytes, after_version: int, timeout: float) -> Versioned | None:
        """The key's value once its version passes ``after_version`` (or whatever it is at ``timeout``)."""
        ...

    async def watch_queue(self, name: bytes, after_seq: int, limit: int, timeout: float) -> list[QueueItem]:
        """Elements after ``after_seq``, waiting up to ``timeout`` for the first one."""
        ...


def open_storage(settings: Settings, sealer: Sealer, service: str = "storage") -> Storage:
    """The engine ``settings.storage`` configures, not yet started.

    Raises:
        ConfigurationError: the PostgreSQL password file cannot be read.
    """
    if settings.storage.backend == "postgres":
        from cloister.storage.postgres import PostgresStore  # psycopg is imported only when asked for

        dsn = settings.storage.dsn
        assert dsn is not None  # the settings refuse postgres without a dsn
        password = _read_password(settings.storage.dsn_password_file)
        return PostgresStore(dsn.get_secret_value(), sealer, password=password, service=service)
    from cloister.storage.sqlite import SQLiteStorage, SQLiteStore

    return SQLiteStorage(SQLiteStore(settings.database_path, sealer, service=service))


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"[storage] dsn_password_file {path} cannot be read ({exc})") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigurationError(f"[storage] dsn_password_file {path} is empty")
    return password
