"""SGX DCAP quotes through Gramine's ``/dev/attestation`` pseudo-files.

Inside a Gramine-SGX enclave, writing 64 bytes to ``user_report_data`` and then reading
``quote`` yields a DCAP quote over the enclave's report with those bytes as its report data.
The files are the process's own, shared by its threads, so one lock spans write and read.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cloister.attestation.backends import Evidence, TEEBackend
from cloister.attestation.producers.intel_collateral import IntelCollateral
from cloister.attestation.producers.layouts import REPORT_DATA_LENGTH, sgx_report_data
from cloister.errors import AttestationError, ConfigurationError

GRAMINE_ATTESTATION_ROOT = Path("/dev/attestation")

_LOCK = threading.Lock()


class GramineBackend(TEEBackend):
    """Evidence from Gramine-SGX: a DCAP quote, version 3.

    Args:
        root: Gramine's attestation directory.
        collateral: where Intel's collateral for each quote comes from; None: none is sent.
    """

    name = "sgx"
    simulated = False

    def __init__(self, root: Path = GRAMINE_ATTESTATION_ROOT, *, collateral: IntelCollateral | None = None) -> None:
        self.root = root
        self.collateral = collateral

    def probe(self) -> None:
        """Check that Gramine was told to produce DCAP quotes.

        Raises:
            ConfigurationError: ``attestation_type`` is not ``dcap`` (``none``: the manifest asks for
                no remote attestation; ``epid``: Intel retired EPID attestation).
        """
        try:
            kind = (self.root / "attestation_type").read_text(encoding="ascii").strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.root / 'attestation_type'}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{self.root / 'attestation_type'} is not text: is this Gramine?") from None
        if kind != "dcap":
            raise ConfigurationError(
                f"Gramine's attestation type is {kind!r}, but Cloister needs DCAP quotes: set "
                'sgx.remote_attestation = "dcap" in the manifest (deploy/gramine/cloister.manifest.template)'
            )

    def evidence(self, report_data: bytes) -> Evidence:
        """A fresh DCAP quote whose report data is ``report_data``, with Intel's collateral if the backend fetches it.

        Raises:
            ValueError: ``report_data`` is not 64 bytes.
            AttestationError: Gramine refused, the quote does not carry ``report_data``, or the
                PCCS answered no usable collateral.
            UnavailableError: the PCCS could not be reached.
        """
        if len(report_data) != REPORT_DATA_LENGTH:
            raise ValueError(f"report data must be {REPORT_DATA_LENGTH} bytes")
        with _LOCK:
            try:
                (self.root / "user_report_data").write_bytes(report_data)
                quote = (self.root / "quote").read_bytes()
            except OSError as exc:
                raise AttestationError(f"Gramine could not produce a quote: {exc.strerror}") from None
        if sgx_report_data(quote) != report_data:
            raise AttestationError("the sgx quote's report data is not the 64 bytes that were asked for")
        collateral = self.collateral.for_quote(quote) if self.collateral is not None else b""
        return Evidence(self.name, quote, b"", collateral=collateral)

    def forget_endorsements(self) -> None:
        if self.collateral is not None:
            self.collateral.forget()
