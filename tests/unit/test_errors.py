"""A full disk travels as RESOURCE_EXHAUSTED and comes back out of the wire as DiskFullError, and only it."""

from __future__ import annotations

import errno

from cloister.errors import DiskFullError, ResourceExhaustedError, StatusCode, error_for_status, is_disk_full


def test_a_full_disk_is_resource_exhausted_naming_the_service() -> None:
    error = DiskFullError.of("storage")
    assert error.status is StatusCode.RESOURCE_EXHAUSTED
    assert error.message == "the storage service is out of disk space; try again once space is freed"
    again = error_for_status(error.status, error.message)
    assert type(again) is DiskFullError and again.message == error.message


def test_other_exhaustion_stays_resource_exhausted() -> None:
    other = error_for_status(StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (5000000 vs. 4194304)")
    assert type(other) is ResourceExhaustedError


def test_a_message_over_grpcs_limit_names_the_setting() -> None:
    """gRPC refuses it before any of our code runs, in words that name no setting."""
    error = error_for_status(StatusCode.RESOURCE_EXHAUSTED, "Sent message larger than max (5000000 vs. 4194304)")
    assert error.message.startswith("Sent message larger than max (5000000 vs. 4194304); the settings")
    assert "[rpc] max_message_bytes" in error.message
    other = error_for_status(StatusCode.RESOURCE_EXHAUSTED, "too many failed logins")
    assert other.message == "too many failed logins"


def test_which_os_errors_mean_a_full_disk() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(DiskFullError())
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))
    assert not is_disk_full(ValueError("no space"))
