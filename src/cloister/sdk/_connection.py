"""Opening attested connections from a client that holds only the root CA and enclave_info."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.report import AttestationPolicy
from cloister.attestation.verify import PeerVerifier
from cloister.config import RPCSettings
from cloister.rpc.channel import SyncPeer


def normalize_address(address: tuple[str, int] | str) -> str:
    if isinstance(address, tuple):
        host, port = address
        return f"{host}:{port}"
    return address


DEFAULT_POLICY = AttestationPolicy(accepted_statuses=frozenset({"OK"}), max_report_age=dt.timedelta(hours=24))
"""What clients accept unless told otherwise: quote status OK, reports at most a day old."""


_CLIENT_RPC = RPCSettings(max_message_bytes=1024**3, internal_max_message_bytes=2**31 - 1)
"""The platform's own ``[rpc] max_message_bytes`` decides what it takes; the client sends and
receives up to 1 GiB, so a large payload is refused (or not) by the service, naming the setting."""


def open_peer(
    service: str,
    address: tuple[str, int] | str,
    as_root_ca_cert_path: str | Path,
    enclave_info_path: str | Path,
    policy: AttestationPolicy | None = None,
) -> SyncPeer:
    """A verified connection to ``service``; the attestation check happens before any request."""
    root = x509.load_pem_x509_certificate(Path(as_root_ca_cert_path).read_bytes())
    info = EnclaveInfo.parse(Path(enclave_info_path).read_bytes())
    return open_verified(service, address, PeerVerifier(root, info, policy or DEFAULT_POLICY))


def open_verified(service: str, address: tuple[str, int] | str, verifier: PeerVerifier) -> SyncPeer:
    """A connection to ``service`` at ``address`` whose attestation ``verifier`` has already accepted."""
    peer = SyncPeer(service, normalize_address(address), verifier, None, _CLIENT_RPC)
    peer.connect()
    return peer
