"""Input and output file records and their crypto info (reference §7.1, §7.2)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from cloister.errors import InvalidArgumentError, InvalidChoiceError, InvalidDataNameError, quoted

CMAC_LENGTH = 16
_SCHEMAS = {
    # schema: (JSON variant name, key length, iv length)
    "aes-gcm-128": ("AesGcm128", 16, 12),
    "aes-gcm-256": ("AesGcm256", 32, 12),
    "teaclave-file-128": ("TeaclaveFile128", 16, 0),
    "raw": ("Raw", 0, 0),
}
_SCHEMA_BY_VARIANT = {variant: schema for schema, (variant, _, _) in _SCHEMAS.items()}
CRYPTO_SCHEMAS = tuple(_SCHEMAS)
"""The ``FileCryptoInfo.schema`` names (reference §7.2)."""

DATA_NAME_RULE = "1 to 128 letters, digits, '_', '-' or '.', not starting with '.'"
_DATA_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def parse_data_name(name: str, where: str) -> str:
    """``name`` if it is a data name (:data:`DATA_NAME_RULE`): never a path, never ``..``.

    Raises:
        InvalidDataNameError: naming the bad name (shortened) and ``where`` it was found.
    """
    if not _DATA_NAME.fullmatch(name):
        raise InvalidDataNameError(f"invalid data name {quoted(name)} in {where}: a data name is {DATA_NAME_RULE}")
    return name


@dataclass(frozen=True)
class FileCrypto:
    """How a file is encrypted. ``repr`` hides the key."""

    schema: str
    key: bytes = field(default=b"", repr=False)
    iv: bytes = field(default=b"", repr=False)

    @classmethod
    def from_request(cls, schema: str, key: bytes, iv: bytes, *, field: str = "crypto_info") -> FileCrypto:
        """Validate a ``FileCryptoInfo``: a known schema, and the key and IV lengths it needs.

        Messages name ``field`` (``crypto_info.key``; just ``key`` when ``field`` is empty) and the
        lengths, never a key's bytes.

        Raises:
            InvalidChoiceError: an unknown schema, naming the known ones.
            InvalidArgumentError: a key or IV of the wrong length.
        """
        prefix = f"{field}." if field else ""
        if schema not in _SCHEMAS:
            raise InvalidChoiceError(f"{prefix}schema", schema, CRYPTO_SCHEMAS)
        _, key_len, iv_len = _SCHEMAS[schema]
        if schema == "raw":
            return cls("raw")
        if len(key) != key_len:
            raise InvalidArgumentError(f"{prefix}key must be {key_len} bytes for {schema}, got {len(key)}")
        if len(iv) != iv_len:
            if schema == "teaclave-file-128":
                raise InvalidArgumentError(f"{prefix}iv must be empty for {schema}, got {len(iv)} bytes")
            raise InvalidArgumentError(f"{prefix}iv must be {iv_len} bytes for {schema}, got {len(iv)}")
        return cls(schema, bytes(key), bytes(iv))

    @classmethod
    def fusion(cls, key: bytes) -> FileCrypto:
        return cls("teaclave-file-128", key)

    def to_json(self) -> Any:
        variant = _SCHEMAS[self.schema][0]
        if self.schema == "raw":
            return "Raw"
        body: dict[str, list[int]] = {"key": list(self.key)}
        if self.schema != "teaclave-file-128":
            body["iv"] = list(self.iv)
        return {variant: body}

    @classmethod
    def from_json(cls, data: Any) -> FileCrypto:
        if data == "Raw":
            return cls("raw")
        ((variant, body),) = data.items()
        return cls(_SCHEMA_BY_VARIANT[variant], bytes(body["key"]), bytes(body.get("iv", [])))


def parse_cmac(cmac: bytes) -> bytes:
    if len(cmac) != CMAC_LENGTH:
        raise InvalidArgumentError(f"cmac must be {CMAC_LENGTH} bytes, got {len(cmac)}")
    return bytes(cmac)


def tag_json(tag: bytes) -> dict[str, list[int]]:
    """A ``FileAuthTag``: ``{"tag": [16 ints]}`` (§3.2)."""
    return {"tag": list(tag)}


def tag_from_json(data: dict[str, list[int]]) -> bytes:
    return bytes(data["tag"])


def uids_json(users: frozenset[str]) -> dict[str, list[str]]:
    """An ``OwnerList`` (a set of user ids): ``{"uids": [...]}`` (§3.2)."""
    return {"uids": sorted(users)}


def uids_from_json(data: dict[str, list[str]]) -> frozenset[str]:
    return frozenset(data["uids"])


def _file_json(file: InputFile | OutputFile) -> dict[str, Any]:
    return {
        "url": file.url,
        "cmac": None if file.cmac is None else tag_json(file.cmac),
        "crypto_info": file.crypto.to_json(),
        "owner": uids_json(file.owner),
        "uuid": str(file.uuid),
    }


@dataclass(frozen=True)
class InputFile:
    url: str
    cmac: bytes
    crypto: FileCrypto
    owner: frozenset[str]
    uuid: uuid.UUID

    @property
    def external_id(self) -> str:
        return f"input-{self.uuid}"

    def to_json(self) -> dict[str, Any]:
        return _file_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputFile:
        return cls(
            url=data["url"],
            cmac=tag_from_json(data["cmac"]),
            crypto=FileCrypto.from_json(data["crypto_info"]),
            owner=uids_from_json(data["owner"]),
            uuid=uuid.UUID(data["uuid"]),
        )


@dataclass(frozen=True)
class OutputFile:
    url: str
    cmac: bytes | None
    crypto: FileCrypto
    owner: frozenset[str]
    uuid: uuid.UUID

    @property
    def external_id(self) -> str:
        return f"output-{self.uuid}"

    def to_json(self) -> dict[str, Any]:
        return _file_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputFile:
        cmac = data.get("cmac")
        return cls(
            url=data["url"],
            cmac=None if cmac is None else tag_from_json(cmac),
            crypto=FileCrypto.from_json(data["crypto_info"]),
            owner=uids_from_json(data["owner"]),
            uuid=uuid.UUID(data["uuid"]),
        )
