"""User roles and their three spellings: request fields, JWT/metadata string, audit form (§4.1).

Cloister adds ``FunctionOwnerManager(org)``, which manages the FunctionOwners of its
organisation as ``DataOwnerManager(org)`` manages DataOwners, and lets a FunctionOwner carry
an organisation. A FunctionOwner without one is spelt exactly as in Teaclave.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class RoleKind(enum.Enum):
    PLATFORM_ADMIN = "PlatformAdmin"
    FUNCTION_OWNER_MANAGER = "FunctionOwnerManager"
    FUNCTION_OWNER = "FunctionOwner"
    DATA_OWNER_MANAGER = "DataOwnerManager"
    DATA_OWNER = "DataOwner"
    INVALID = "Invalid"


_ORGANISATION_KINDS = (
    RoleKind.FUNCTION_OWNER_MANAGER,
    RoleKind.FUNCTION_OWNER,
    RoleKind.DATA_OWNER_MANAGER,
    RoleKind.DATA_OWNER,
)
"""Kinds whose role names an organisation (the attribute); a FunctionOwner's may be empty."""
_ALWAYS_SPELT = (RoleKind.FUNCTION_OWNER_MANAGER, RoleKind.DATA_OWNER_MANAGER, RoleKind.DATA_OWNER)
"""Kinds spelt with their attribute even when it is empty, as Teaclave spells data owners."""


@dataclass(frozen=True)
class Role:
    kind: RoleKind
    attribute: str = ""

    @classmethod
    def from_request(cls, role: str, attribute: str) -> Role:
        """The request parser: exact role names; the attribute counts for every role but PlatformAdmin."""
        try:
            kind = RoleKind(role)
        except ValueError:
            return cls(RoleKind.INVALID)
        if kind in _ORGANISATION_KINDS:
            return cls(kind, attribute)
        return cls(kind)

    @classmethod
    def parse(cls, text: str) -> Role:
        """The claims parser, for the role string in a token or in ``role`` metadata."""
        if text == RoleKind.PLATFORM_ADMIN.value:
            return cls(RoleKind.PLATFORM_ADMIN)
        if text == RoleKind.FUNCTION_OWNER.value:
            return cls(RoleKind.FUNCTION_OWNER)
        kind_name, dash, attribute = text.partition("-")
        role = cls.from_request(kind_name, attribute) if dash else cls(RoleKind.INVALID)
        return role if role.kind in _ORGANISATION_KINDS else cls(RoleKind.INVALID)

    def __str__(self) -> str:
        if self._spelt_with_attribute:
            return f"{self.kind.value}-{self.attribute}"
        return self.kind.value

    @property
    def _spelt_with_attribute(self) -> bool:
        return self.kind in _ALWAYS_SPELT or (self.kind is RoleKind.FUNCTION_OWNER and self.attribute != "")

    @property
    def is_valid(self) -> bool:
        return self.kind is not RoleKind.INVALID

    @property
    def is_admin(self) -> bool:
        return self.kind is RoleKind.PLATFORM_ADMIN

    @property
    def is_data_owner(self) -> bool:
        return self.kind in (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER)

    @property
    def policy_subject(self) -> str:
        """What the frontend sends to access control: the role up to its first ``-``."""
        return str(self).split("-", 1)[0]

    def debug_form(self) -> str:
        """The form audit entries use, e.g. ``DataOwner("org1")``."""
        if self._spelt_with_attribute:
            return f'{self.kind.value}("{self.attribute}")'
        return self.kind.value

    def to_json(self) -> Any:
        if self._spelt_with_attribute:
            return {self.kind.value: self.attribute}
        return self.kind.value

    @classmethod
    def from_json(cls, data: Any) -> Role:
        if isinstance(data, dict):
            ((kind, attribute),) = data.items()
            return cls(RoleKind(kind), attribute)
        return cls(RoleKind(data))
