"""Stand-ins for the interfaces hardware TEEs offer a guest, for unit tests on machines without one.

Nothing here is a TEE or a kernel. A stand-in is a temporary directory laid out like the real
interface (configfs-tsm's report entries, Gramine's ``/dev/attestation``) whose report file is a
FIFO: a thread answers each read after the backend's write, so the backend goes through the same
write-then-read sequence it performs on real hardware and gets a report made for what it wrote.
The answers are real evidence from ``../shared/fixtures/tee-evidence``, optionally with the
report data replaced by what was asked for (which breaks the hardware's signature, but no
producer checks signatures: verifiers do, with the unmodified fixtures).

:func:`write_pccs_answers` and :func:`write_kds_answers` lay out, for
``http_fixture_server.FixtureHTTPServer``, what a PCCS (Intel's v4 API) and AMD's KDS would
answer for the fixtures: the fixtures' real collateral and VCEK, served by a stand-in, not by Intel or AMD.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from shared_fixtures import TEE_EVIDENCE

from cloister.attestation.backends import Evidence
from cloister.attestation.producers import TSMBackend
from cloister.attestation.producers.nsm import NitroBackend

Answer = Callable[[bytes], bytes]

TDX_REPORT_DATA_OFFSET = 568
SGX_REPORT_DATA_OFFSET = 368
SNP_REPORT_DATA_OFFSET = 0x50


def tdx_quote() -> bytes:
    return (TEE_EVIDENCE / "tdx" / "tdx_quote").read_bytes()


def sgx_quote() -> bytes:
    return (TEE_EVIDENCE / "sgx" / "sgx_quote").read_bytes()


def snp_report() -> bytes:
    return bytes.fromhex((TEE_EVIDENCE / "sev-snp" / "report_milan.hex").read_text().strip())


def nitro_document() -> bytes:
    return base64.b64decode((TEE_EVIDENCE / "nitro" / "nitro_attestation.b64").read_text())


def snp_certificate_table() -> bytes:
    """The fixture's VCEK and ASK in a certificate table, as an SNP host hands it to its guest."""
    vcek = (TEE_EVIDENCE / "sev-snp" / "vcek_milan.der").read_bytes()
    ask = x509.load_pem_x509_certificate((TEE_EVIDENCE / "sev-snp" / "ask_milan.pem").read_bytes())
    entries = [
        (uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"), vcek),
        (uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"), ask.public_bytes(Encoding.DER)),
    ]
    offset = 24 * (len(entries) + 1)  # the entries, an all-zero end entry, then the certificates
    header, body = b"", b""
    for guid, der in entries:
        header += guid.bytes + struct.pack("<II", offset + len(body), len(der))
        body += der
    return header + bytes(24) + body


def fixture_evidence(kind: str) -> Evidence:
    """The fixture of ``kind`` with what verifying it needs: Intel's collateral, the SNP host's
    certificate table (Nitro's document carries its own chain)."""
    if kind in ("sgx", "tdx"):
        quote = sgx_quote() if kind == "sgx" else tdx_quote()
        return Evidence(
            kind, quote, b"", collateral=(TEE_EVIDENCE / kind / f"{kind}_quote_collateral.json").read_bytes()
        )
    if kind == "sev-snp":
        return Evidence("sev-snp", snp_report(), b"", certificates=snp_certificate_table())
    return Evidence("nitro", nitro_document(), b"")


VERIFIES_AT = {
    "sgx": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),  # SGX and TDX collateral: 2025-06-19 .. 2025-07-19
    "tdx": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),
    "sev-snp": dt.datetime(2025, 7, 1, tzinfo=dt.UTC),  # the Milan chain: 2023-04-03 .. 2030-04-03
    "nitro": dt.datetime(2024, 9, 7, 14, 37, 39, 545000, tzinfo=dt.UTC),  # issued then; its leaf lives 3 hours
}
"""A time inside each fixture's window (``NOTICE.md``)."""
EXPIRED_AT = {
    "sgx": dt.datetime(2025, 7, 20, tzinfo=dt.UTC),
    "tdx": dt.datetime(2025, 7, 20, tzinfo=dt.UTC),
    "sev-snp": dt.datetime(2030, 4, 4, tzinfo=dt.UTC),
    "nitro": dt.datetime(2024, 9, 7, 18, 0, tzinfo=dt.UTC),
}
"""A time after each fixture's window."""
FLIPPED_BYTE = {"sgx": 48 + 64, "tdx": 48 + 200, "sev-snp": 0x90, "nitro": -1}
"""A byte each verifier must notice: inside the signed body (SGX and TDX report body, SNP
measurement), and the last byte of the Nitro document, which is its signature's."""


def unchanged(evidence: bytes) -> Answer:
    """Answer every request with ``evidence`` as it is."""
    return lambda _request: evidence


def with_report_data_at(evidence: bytes, offset: int) -> Answer:
    """Answer with ``evidence`` whose 64 bytes at ``offset`` are the request (if it is 64 bytes)."""

    def answer(request: bytes) -> bytes:
        if len(request) != 64:
            return evidence
        return evidence[:offset] + request + evidence[offset + 64 :]

    return answer


def _serve_once(fifo: Path, request_file: Path, answer: Answer, before_answer: Callable[[], None]) -> bytes:
    with fifo.open("wb") as out:  # blocks until the backend opens the FIFO to read
        request = request_file.read_bytes()
        before_answer()
        out.write(answer(request))
    return request


def _release(fifo: Path, thread: threading.Thread) -> None:
    """Let a thread blocked on opening ``fifo`` for writing finish: open it to read, drain, join."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        thread.join(timeout=10)
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 65536):
                pass
    finally:
        os.close(fd)


class StandInConfigfsTSM:
    """A directory laid out like ``/sys/kernel/config/tsm/report``, answering with fixed evidence.

    Args:
        root: the directory standing for the report root (made if missing).
        provider: what each entry's ``provider`` says (``tdx_guest``, ``sev_guest``).
        answer: makes ``outblob`` from what was written to ``inblob``.
        auxblob: the ``auxblob`` of each entry; ``None`` for none (as on TDX).
        interfered: how many entries, first to last, see a second writer (``generation`` moves by 2).
    """

    def __init__(
        self, root: Path, provider: str, answer: Answer, auxblob: bytes | None = None, interfered: int = 0
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.provider = provider
        self.answer = answer
        self.auxblob = auxblob
        self.interfered = interfered
        self.requests: list[bytes] = []
        self.entries: list[Path] = []
        self._threads: dict[Path, threading.Thread] = {}

    def make_entry(self, entry: Path) -> None:
        entry.mkdir()
        (entry / "provider").write_text(self.provider + "\n")
        (entry / "generation").write_text("0\n")
        (entry / "inblob").write_bytes(b"")
        if self.auxblob is not None:
            (entry / "auxblob").write_bytes(self.auxblob)
        os.mkfifo(entry / "outblob")
        step = 2 if len(self.entries) < self.interfered else 1
        self.entries.append(entry)

        def bump() -> None:
            (entry / "generation").write_text(f"{step}\n")

        def serve() -> None:
            request = _serve_once(entry / "outblob", entry / "inblob", self.answer, bump)
            if request:
                self.requests.append(request)

        thread = threading.Thread(target=serve, name=f"stand-in {entry.name}", daemon=True)
        self._threads[entry] = thread
        thread.start()

    def remove_entry(self, entry: Path) -> None:
        _release(entry / "outblob", self._threads.pop(entry))
        shutil.rmtree(entry)

    def backend(self, name: str, **options: Any) -> TSMBackend:
        """A ``TSMBackend`` over this stand-in: its mkdir and rmdir come here, everything else is files.

        ``options`` go to ``TSMBackend`` (``collateral``, ``vceks``).
        """
        stand_in = self

        class StandInTSMBackend(TSMBackend):
            def _make_entry(self, entry: Path) -> None:
                stand_in.make_entry(entry)

            def _remove_entry(self, entry: Path) -> None:
                stand_in.remove_entry(entry)

        return StandInTSMBackend(name, self.root, **options)


@contextlib.contextmanager
def stand_in_gramine(root: Path, answer: Answer, attestation_type: str = "dcap") -> Iterator[list[bytes]]:
    """A directory laid out like Gramine's ``/dev/attestation``; yields the report data written, in order."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "attestation_type").write_text(attestation_type)
    (root / "user_report_data").write_bytes(bytes(64))
    os.mkfifo(root / "quote")
    requests: list[bytes] = []
    stopping = threading.Event()

    def next_fifo() -> None:
        # A FIFO answers once: before this answer ends, a fresh one takes its name, so the backend's
        # next read cannot open this one again and get the rest of a later answer.
        os.mkfifo(root / "quote.next")
        os.replace(root / "quote.next", root / "quote")

    def serve() -> None:
        while True:
            with (root / "quote").open("wb") as out:  # blocks until the backend (or the release) opens it
                if stopping.is_set():  # the backend's reads are over: this is the release
                    return
                requests.append((root / "user_report_data").read_bytes())
                out.write(answer(requests[-1]))
                next_fifo()

    thread = threading.Thread(target=serve, name="stand-in gramine", daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        stopping.set()
        _release(root / "quote", thread)


class StandInNSM:
    """Answers NSM requests as the device would, with the fixture document (its user_data replaced if asked)."""

    def __init__(self, document: bytes, replace_user_data: bool) -> None:
        self.document = document
        self.replace_user_data = replace_user_data
        self.requests: list[object] = []

    def respond(self, request: bytes) -> bytes:
        decoded = cbor2.loads(request)
        self.requests.append(decoded)
        document = self.document
        if self.replace_user_data:
            envelope = cbor2.loads(document)
            payload = cbor2.loads(envelope[2])
            payload["user_data"] = decoded["Attestation"]["user_data"]
            envelope[2] = cbor2.dumps(payload)
            document = cbor2.dumps(envelope)
        return cbor2.dumps({"Attestation": {"document": document}})

    def backend(self) -> NitroBackend:
        stand_in = self

        class StandInNitroBackend(NitroBackend):
            def _exchange(self, request: bytes) -> bytes:
                return stand_in.respond(request)

        return StandInNitroBackend()


def write_pccs_answers(root: Path, kind: str) -> dict[str, dict[str, str]]:
    """Under ``root``, what a PCCS answers for the ``sgx`` or ``tdx`` fixture quote (whatever the query).

    The bodies and issuer-chain headers are rebuilt from the fixture's collateral: the signed TCB
    info and QE identity exactly as Intel signed them, the PCK CRL in DER, the root CA's CRL in
    hex (as a PCCS serves it). Returns the headers, by path, for ``ServerSwitches.headers``.
    """
    collateral = json.loads((TEE_EVIDENCE / kind / f"{kind}_quote_collateral.json").read_text())
    api = root / "sgx" / "certification" / "v4"
    tee_api = root / kind / "certification" / "v4"
    (tee_api / "qe").mkdir(parents=True, exist_ok=True)
    api.mkdir(parents=True, exist_ok=True)
    (api / "pckcrl").write_bytes(bytes.fromhex(collateral["pck_crl"]))
    (api / "rootcacrl").write_text(collateral["root_ca_crl"])
    tcb = f'{{"tcbInfo":{collateral["tcb_info"]},"signature":"{collateral["tcb_info_signature"]}"}}'
    (tee_api / "tcb").write_text(tcb)
    qe = f'{{"enclaveIdentity":{collateral["qe_identity"]},"signature":"{collateral["qe_identity_signature"]}"}}'
    (tee_api / "qe" / "identity").write_text(qe)
    return {
        "/sgx/certification/v4/pckcrl": {"SGX-PCK-CRL-Issuer-Chain": quote(collateral["pck_crl_issuer_chain"])},
        f"/{kind}/certification/v4/tcb": {"TCB-Info-Issuer-Chain": quote(collateral["tcb_info_issuer_chain"])},
        f"/{kind}/certification/v4/qe/identity": {
            "SGX-Enclave-Identity-Issuer-Chain": quote(collateral["qe_identity_issuer_chain"])
        },
    }


def snp_chip_id() -> bytes:
    return snp_report()[0x1A0:0x1E0]


def write_kds_answers(root: Path) -> str:
    """Under ``root``, the fixture chip's VCEK where AMD's KDS serves it; returns that path."""
    path = f"vcek/v1/Milan/{snp_chip_id().hex()}"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes((TEE_EVIDENCE / "sev-snp" / "vcek_milan.der").read_bytes())
    return "/" + path
