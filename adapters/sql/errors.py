"""Typed errors of the SQL store. Bad input is also a ``ValueError`` (via InvalidInput)."""

from __future__ import annotations

from movecar_core.errors import InvalidInput, PortError, excerpt


class StorageError(PortError):
    """The database could not do what the store asked."""


class DatabaseUnavailable(StorageError):
    """The database cannot be opened or reached (no server, no such file or folder,
    refused credentials). The message names the URL with its password masked."""


class SchemaNotReady(StorageError):
    """The database schema is missing or older than this library: run ``movecar db upgrade``."""


class StorageInputError(InvalidInput):
    """A value refused at the store's boundary (oversized, wrong type, malformed id...).

    Nothing is written when it is raised.
    """

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={excerpt(value, 80)}: {why}")


class LegalHoldActive(StorageError):
    """The case is under legal hold: it may not be purged."""
