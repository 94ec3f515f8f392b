"""Opening attested connections from a client that holds only the root CA and enclave_info."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from cloister.attestation.enclave_info import EnclaveInfo
from cloister.attestation.verify import PeerVerifier
from cloister.config import RPCSettings
from cloister.rpc.channel import SyncPeer


def normalize_address(address: tuple[str, int] | str) -> str:
    if isinstance(address, tuple):
        host, port = address
        return f"{host}:{port}"
    return address


def open_peer(
    service: str, address: tuple[str, int] | str, as_root_ca_cert_path: str | Path, enclave_info_path: str | Path
) -> SyncPeer:
    """A verified connection to ``service``; the attestation check happens before any request."""
    root = x509.load_pem_x509_certificate(Path(as_root_ca_cert_path).read_bytes())
    info = EnclaveInfo.parse(Path(enclave_info_path).read_bytes())
    peer = SyncPeer(service, normalize_address(address), PeerVerifier(root, info), None, RPCSettings())
    peer.connect()
    return peer
