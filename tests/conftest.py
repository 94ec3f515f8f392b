"""Fixtures every suite may use: the throw-away PostgreSQL server (one per session) and the storage engines."""

from __future__ import annotations

from postgres_cluster import postgres_cluster, postgres_database
from storage_engines import postgres_engine, storage_engine

__all__ = ["postgres_cluster", "postgres_database", "postgres_engine", "storage_engine"]
