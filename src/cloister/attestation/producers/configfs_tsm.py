"""TDX quotes and SEV-SNP reports through Linux's configfs-tsm (``/sys/kernel/config/tsm/report``).

Linux 6.7 and later expose one interface for both confidential VMs: make a directory under the
report root, write 64 bytes of report data to its ``inblob``, read the quote or report from
``outblob`` (and, for SNP, the host's certificate table from ``auxblob``), remove the directory.
``generation`` counts writes to the entry; if it moved by more than our own write, someone else
wrote in between and the report may answer their data, so we start again with a new entry.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cloister.attestation.backends import Evidence, TEEBackend
from cloister.attestation.producers.amd_kds import AMDKeyDistribution
from cloister.attestation.producers.intel_collateral import IntelCollateral
from cloister.attestation.producers.layouts import (
    REPORT_DATA_LENGTH,
    snp_certificate_table,
    snp_certificates,
    snp_report_data,
    tdx_report_data,
)
from cloister.errors import AttestationError, ConfigurationError

logger = logging.getLogger(__name__)

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
ATTEMPTS = 3
"""Entries tried before giving up on concurrent writers."""

_PROVIDERS = {"tdx": "tdx_guest", "sev-snp": "sev_guest"}
_REPORT_DATA_OF: dict[str, Callable[[bytes], bytes]] = {"tdx": tdx_report_data, "sev-snp": snp_report_data}


class TSMBackend(TEEBackend):
    """Evidence from configfs-tsm: a TDX quote (``tdx``) or an SEV-SNP report (``sev-snp``).

    Args:
        name: ``tdx`` or ``sev-snp``; the kernel's provider must be the matching guest driver.
        root: the report directory of configfs-tsm.
        collateral: ``tdx``: where Intel's collateral for each quote comes from; None: none is sent.
        vceks: ``sev-snp``: where the VCEK comes from when the host supplies none; None: not fetched.
    """

    simulated = False

    def __init__(
        self,
        name: str,
        root: Path = TSM_REPORT_ROOT,
        *,
        collateral: IntelCollateral | None = None,
        vceks: AMDKeyDistribution | None = None,
    ) -> None:
        if name not in _PROVIDERS:
            raise ValueError(f"configfs-tsm serves tdx and sev-snp, not {name!r}")
        self.name = name
        self.root = root
        self.collateral = collateral
        self.vceks = vceks

    def probe(self) -> None:
        """Check that the kernel's provider is this backend's guest driver, without making a report.

        Raises:
            ConfigurationError: the provider is another one (a TDX backend on an SNP VM), or the
                root is not configfs-tsm.
        """
        entry = self._new_entry()
        try:
            provider = _read_text(entry / "provider", self.root)
        finally:
            self._remove_entry(entry)
        if provider != _PROVIDERS[self.name]:
            raise ConfigurationError(
                f"TEE backend {self.name!r} needs the {_PROVIDERS[self.name]} provider of configfs-tsm, "
                f"but {self.root} is served by {provider!r}; set tee_backend to this machine's TEE"
            )

    def evidence(self, report_data: bytes) -> Evidence:
        """A fresh quote or report whose report data is ``report_data``.

        A TDX quote comes with Intel's collateral and an SNP report with a certificate table
        holding its VCEK (the host's, else AMD's KDS's), when the backend was given where to fetch them.

        Raises:
            ValueError: ``report_data`` is not 64 bytes.
            AttestationError: the kernel refused, the report does not carry ``report_data``,
                concurrent writers kept changing the entry, or the collateral or VCEK could not be had.
            UnavailableError: the PCCS or KDS could not be reached.
        """
        if len(report_data) != REPORT_DATA_LENGTH:
            raise ValueError(f"report data must be {REPORT_DATA_LENGTH} bytes")
        for attempt in range(1, ATTEMPTS + 1):
            entry = self._new_entry()
            try:
                before = _read_generation(entry, self.root)
                _write_blob(entry / "inblob", report_data)
                outblob = _read_blob(entry / "outblob")
                auxblob = _read_optional_blob(entry / "auxblob")
                provider = _read_text(entry / "provider", self.root)
                after = _read_generation(entry, self.root)
            finally:
                self._remove_entry(entry)
            if after == before + 1:
                break
            logger.warning("configfs-tsm entry changed under another writer (attempt %d of %d)", attempt, ATTEMPTS)
        else:
            raise AttestationError(f"configfs-tsm: other writers changed the report entry {ATTEMPTS} times running")
        if provider != _PROVIDERS[self.name]:
            raise AttestationError(f"configfs-tsm report came from {provider!r}, not {_PROVIDERS[self.name]!r}")
        if _REPORT_DATA_OF[self.name](outblob) != report_data:
            raise AttestationError(f"the {self.name} report's report data is not the 64 bytes that were asked for")
        collateral = b""
        if self.name == "tdx" and self.collateral is not None:
            collateral = self.collateral.for_quote(outblob)
        if self.name == "sev-snp" and self.vceks is not None:
            auxblob = self._with_vcek(outblob, auxblob)
        return Evidence(self.name, outblob, b"", certificates=auxblob, collateral=collateral)

    def _with_vcek(self, report: bytes, table: bytes) -> bytes:
        """The host's certificate table if it holds a VCEK or VLEK; else one with the VCEK from KDS added."""
        certificates = snp_certificates(table) if table else {}
        if "vcek" in certificates or "vlek" in certificates:
            return table
        assert self.vceks is not None
        return snp_certificate_table({"vcek": self.vceks.vcek_for(report), **certificates})

    def forget_endorsements(self) -> None:
        for source in (self.collateral, self.vceks):
            if source is not None:
                source.forget()

    def _new_entry(self) -> Path:
        entry = self.root / f"cloister-{os.getpid()}-{secrets.token_hex(8)}"
        try:
            self._make_entry(entry)
        except FileNotFoundError:
            raise ConfigurationError(
                f"{self.root} does not exist: configfs-tsm needs Linux 6.7 or later with configfs mounted "
                "(mount -t configfs none /sys/kernel/config)"
            ) from None
        except PermissionError:
            raise ConfigurationError(f"no permission to make a report entry under {self.root}") from None
        except OSError as exc:
            hint = " (a read-only /sys: see docs/tee.md for the systemd unit)" if exc.errno == errno.EROFS else ""
            raise ConfigurationError(f"cannot make a report entry under {self.root}: {exc.strerror}{hint}") from None
        return entry

    def _make_entry(self, entry: Path) -> None:
        """Make the report entry; on configfs the kernel fills it with its attribute files.

        This and :meth:`_remove_entry` are the two calls that a stand-in for the kernel replaces.
        """
        entry.mkdir(mode=0o700)

    def _remove_entry(self, entry: Path) -> None:
        """Remove the entry; on configfs its attribute files go with it."""
        try:
            entry.rmdir()
        except OSError as exc:
            logger.warning("could not remove the configfs-tsm entry %s: %s", entry, exc.strerror)


def _write_blob(path: Path, data: bytes) -> None:
    # configfs takes a binary attribute in one piece, on close.
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AttestationError(f"configfs-tsm refused {path.name}: {exc.strerror}") from None
    if written != len(data):
        raise AttestationError(f"configfs-tsm took only part of {path.name}")


def _read_blob(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AttestationError(f"configfs-tsm could not produce {path.name}: {exc.strerror}") from None


def _read_optional_blob(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODATA):
            return b""
        raise AttestationError(f"configfs-tsm could not produce {path.name}: {exc.strerror}") from None


def _read_text(path: Path, root: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"{root} is not configfs-tsm: a new report entry has no {path.name}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{root} is not configfs-tsm: the {path.name} of a report entry is not text") from None
    except OSError as exc:
        raise AttestationError(f"configfs-tsm could not produce {path.name}: {exc.strerror}") from None


def _read_generation(entry: Path, root: Path) -> int:
    text = _read_text(entry / "generation", root)
    try:
        return int(text)
    except ValueError:
        raise AttestationError(f"configfs-tsm generation is not a number: {text[:20]!r}") from None
