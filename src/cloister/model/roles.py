"""User roles and their three spellings: request fields, JWT/metadata string, audit form (§4.1)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class RoleKind(enum.Enum):
    PLATFORM_ADMIN = "PlatformAdmin"
    FUNCTION_OWNER = "FunctionOwner"
    DATA_OWNER_MANAGER = "DataOwnerManager"
    DATA_OWNER = "DataOwner"
    INVALID = "Invalid"


@dataclass(frozen=True)
class Role:
    kind: RoleKind
    attribute: str = ""

    @classmethod
    def from_request(cls, role: str, attribute: str) -> Role:
        """The request parser: exact role names; the attribute counts for data owners only."""
        try:
            kind = RoleKind(role)
        except ValueError:
            return cls(RoleKind.INVALID)
        if kind in (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER):
            return cls(kind, attribute)
        return cls(kind)

    @classmethod
    def parse(cls, text: str) -> Role:
        """The claims parser, for the role string in a token or in ``role`` metadata."""
        if text == RoleKind.PLATFORM_ADMIN.value:
            return cls(RoleKind.PLATFORM_ADMIN)
        if text == RoleKind.FUNCTION_OWNER.value:
            return cls(RoleKind.FUNCTION_OWNER)
        if text.startswith("DataOwner-"):
            return cls(RoleKind.DATA_OWNER, text[len("DataOwner-") :])
        if text.startswith("DataOwnerManager-"):
            return cls(RoleKind.DATA_OWNER_MANAGER, text[len("DataOwnerManager-") :])
        return cls(RoleKind.INVALID)

    def __str__(self) -> str:
        if self.kind in (RoleKind.DATA_OWNER, RoleKind.DATA_OWNER_MANAGER):
            return f"{self.kind.value}-{self.attribute}"
        return self.kind.value

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
        if self.is_data_owner:
            return f'{self.kind.value}("{self.attribute}")'
        return self.kind.value

    def to_json(self) -> Any:
        if self.is_data_owner:
            return {self.kind.value: self.attribute}
        return self.kind.value

    @classmethod
    def from_json(cls, data: Any) -> Role:
        if isinstance(data, dict):
            ((kind, attribute),) = data.items()
            return cls(RoleKind(kind), attribute)
        return cls(RoleKind(data))
