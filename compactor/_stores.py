"""Choosing a session store by its spec: a ``postgresql://`` URL or a folder."""

from __future__ import annotations

import os
from typing import Any

from ._optional import require
from ._store import FileSessionStore, SessionStoreProtocol

#: URL schemes that name a PostgreSQL store (libpq accepts both).
PG_SCHEMES = ("postgresql://", "postgres://")


def is_store_url(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a PostgreSQL store (a ``postgresql://`` or ``postgres://``
    URL; scheme case-insensitive) rather than a folder."""
    return isinstance(spec, str) and spec[:13].lower().startswith(PG_SCHEMES)


def open_store(spec: str | os.PathLike[str], **options: Any) -> SessionStoreProtocol:
    """The session store ``spec`` names: a ``postgresql://``/``postgres://`` URL gives a
    :class:`~compactor._pgstore.PostgresStore` (psycopg imported only then), anything else
    a :class:`~compactor._store.FileSessionStore` rooted at that folder (created 0700 when
    missing). ``options`` go to the store's constructor (``schema=``, ``max_size=`` for
    PostgreSQL; ``fsync=`` for files).

    Raises:
        MissingExtraError: a URL, and the ``postgres`` extra is not installed (one line
            naming ``pip install 'agent-context-compactor[postgres]'``).
        ConfigError: the server cannot be reached or its schema is unusable; a folder
            path that is a file.
        OSError: the folder cannot be created.
    """
    if is_store_url(spec):
        require("psycopg", extra="postgres", what="a postgresql:// store")
        require("psycopg_pool", extra="postgres", what="a postgresql:// store")
        from ._pgstore import PostgresStore

        return PostgresStore(str(spec), **options)
    return FileSessionStore(spec, **options)


__all__ = ["PG_SCHEMES", "is_store_url", "open_store"]
