"""Whose address a call comes from: its connection's, or the browser's that the attested console names.

The web console calls the public endpoints for every signed-in browser, so left alone, login
throttling and audit entries would see one address for all of them: the console's. The console
puts the browser's address in each call's metadata with the time, the method, its attested
client certificate and its signature over the three. A public endpoint takes that address only
when the certificate verifies as the console's identity (``teaclave_console_service`` in
enclave_info) and signed exactly this claim within :data:`MAX_SKEW_SECONDS`; it refuses a call
whose claim does not hold, rather than serve it under the connection's address, because its
caller tried to speak for someone else.

gRPC's Python servers cannot ask for an optional client certificate, so the claim carries its
own, and the public endpoints accept metadata large enough for it (:data:`MAX_METADATA_BYTES`).
"""

from __future__ import annotations

import contextvars
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import unquote

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.identity import ServiceIdentity
from cloister.attestation.measurement import enclave_name
from cloister.attestation.verify import PeerVerifier
from cloister.config import CONSOLE
from cloister.errors import AttestationError

FORWARDER = CONSOLE
"""The only identity trusted to name its users' addresses."""
ADDRESS_KEY = "cloister-forwarded-for"
AT_KEY = "cloister-forwarded-at"
CERTIFICATE_KEY = "cloister-forwarder-certificate-bin"
SIGNATURE_KEY = "cloister-forwarder-signature-bin"
KEYS = frozenset({ADDRESS_KEY, AT_KEY, CERTIFICATE_KEY, SIGNATURE_KEY})
MAX_SKEW_SECONDS = 120
"""A claim signed longer ago than this (or as far in the future) is refused."""
MAX_CERTIFICATE_BYTES = 16 * 1024
"""A genuine certificate, with its report and the report's signing chain, takes about 7 KiB."""
MAX_METADATA_BYTES = 64 * 1024
"""What the public endpoints accept in one call's metadata: a claim's certificate carries an
attestation report and its signing chain, several kilobytes that gRPC's 8 KiB default refuses."""
_UNKNOWN = "::"
_DOMAIN = b"cloister forwarded client address v1"

_caller_ip: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("caller_ip", default=None)


def claim_metadata(
    identity: ServiceIdentity, key: ec.EllipticCurvePrivateKey, address: str, method: str, now: float | None = None
) -> tuple[tuple[str, str | bytes], ...]:
    """Metadata naming ``address`` (text; not an IP address counts as unknown) as the client of
    a call to ``method`` (its short name, ``UserLogin``), signed with ``identity``'s ``key``."""
    shown = _canonical(address)
    at = str(int(time.time() if now is None else now))
    signature = key.sign(_signed(method, shown, at), ec.ECDSA(hashes.SHA256()))
    certificate = ssl.PEM_cert_to_DER_cert(identity.client_certificate_pem.decode())
    return ((ADDRESS_KEY, shown), (AT_KEY, at), (CERTIFICATE_KEY, certificate), (SIGNATURE_KEY, signature))


class ClaimSigner:
    """Signs claims with the newest of an identity that is renewed underneath it."""

    def __init__(self, identity: Callable[[], ServiceIdentity]) -> None:
        self._identity = identity
        self._loaded: tuple[ServiceIdentity, ec.EllipticCurvePrivateKey] | None = None
        self._lock = threading.Lock()

    def metadata(self, address: str, method: str) -> tuple[tuple[str, str | bytes], ...]:
        identity = self._identity()
        with self._lock:
            if self._loaded is None or self._loaded[0] is not identity:
                key = serialization.load_pem_private_key(identity.private_key_pem, None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                self._loaded = (identity, key)
            key = self._loaded[1]
        return claim_metadata(identity, key, address, method)


def claimed_ip(
    metadata: Iterable[tuple[str, str | bytes]] | None,
    method: str,
    verifier: PeerVerifier | None,
    issuer: x509.Certificate | None,
    now: float | None = None,
) -> bytes | None:
    """The 16-byte address a verified claim in ``metadata`` names for this call to ``method``;
    None when there is no claim. The claim's certificate must be issued by ``issuer`` (the
    deployment CA) and verify under ``verifier`` as the console's identity.

    Raises:
        AttestationError: there is a claim and it does not hold.
    """
    values: dict[str, str | bytes] = {}
    for key, value in metadata or ():
        if key in KEYS:
            if key in values:
                raise AttestationError(f"a forwarded client address names {key} twice")
            values[key] = value
    if not values:
        return None
    missing = sorted(KEYS - values.keys())
    if missing:
        raise AttestationError(f"a forwarded client address needs {', '.join(missing)} as well")
    address, at, certificate, signature = (values[k] for k in (ADDRESS_KEY, AT_KEY, CERTIFICATE_KEY, SIGNATURE_KEY))
    if not (isinstance(address, str) and isinstance(at, str)):
        raise AttestationError("a forwarded client address is malformed")
    if not (isinstance(certificate, bytes) and isinstance(signature, bytes)):
        raise AttestationError("a forwarded client address is malformed")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AttestationError("a forwarded client address is not an IP address") from None
    if not (at.isascii() and at.isdigit() and len(at) < 20):
        raise AttestationError("a forwarded client address has no valid time")
    if abs((time.time() if now is None else now) - int(at)) > MAX_SKEW_SECONDS:
        raise AttestationError(f"a forwarded client address was signed more than {MAX_SKEW_SECONDS} s from now")
    if verifier is None or issuer is None:
        raise AttestationError("this endpoint cannot verify who forwards a client address")
    # Cheap checks first: only a certificate the deployment CA issued (to an identity the
    # attestation service endorsed) is worth verifying in full, which costs what its report costs.
    if len(certificate) > MAX_CERTIFICATE_BYTES:
        raise AttestationError("the forwarder's certificate is larger than any genuine one")
    try:
        parsed = x509.load_der_x509_certificate(certificate)
        parsed.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise AttestationError("the forwarder's certificate is not one the deployment CA issued") from None
    public_key = parsed.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise AttestationError("the forwarder's certificate key is not ECDSA")
    try:
        public_key.verify(signature, _signed(method, address, at), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AttestationError("the forwarded client address is not signed by the forwarder's key") from None
    try:
        verifier.verify(certificate, [enclave_name(FORWARDER)])
    except AttestationError as exc:
        raise AttestationError(f"the forwarder of a client address failed attestation: {exc.message}") from None
    return _packed(ip)


def bind_caller_ip(
    context: grpc.aio.ServicerContext, method: str, verifier: PeerVerifier | None, issuer: x509.Certificate | None
) -> contextvars.Token[bytes | None]:
    """Work out the address of this call's client (the claim's, else the connection's) for
    :func:`caller_ip`; reset it with the token returned when the call ends.

    Raises:
        AttestationError: the call carries a claim that does not hold.
    """
    claimed = claimed_ip(context.invocation_metadata(), method, verifier, issuer)
    return _caller_ip.set(claimed if claimed is not None else client_ip(context.peer() or ""))


def unbind_caller_ip(token: contextvars.Token[bytes | None]) -> None:
    _caller_ip.reset(token)


def caller_ip(context: grpc.aio.ServicerContext) -> bytes:
    """The 16-byte address of the client this call is for, as the public endpoint worked it out."""
    bound = _caller_ip.get()
    return bound if bound is not None else client_ip(context.peer() or "")


def client_ip(peer: str) -> bytes:
    """16-byte IPv6 form of a gRPC peer string; IPv4 becomes IPv4-compatible ``::a.b.c.d``.

    gRPC writes IPv6 peers percent-encoded (``ipv6:%5B::1%5D:5000``) and may add a ``%zone``.
    """
    try:
        kind, _, rest = unquote(peer).partition(":")
        if kind == "ipv4":
            return _packed(ipaddress.IPv4Address(rest.rsplit(":", 1)[0]))
        if kind == "ipv6":
            return _packed(ipaddress.IPv6Address(rest.rsplit(":", 1)[0].strip("[]").split("%", 1)[0]))
    except ValueError:
        pass
    return bytes(16)


def _packed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """The 16 bytes the audit log and the login limits keep: IPv4 as IPv4-compatible ``::a.b.c.d``."""
    return bytes(12) + ip.packed if isinstance(ip, ipaddress.IPv4Address) else ip.packed


def _canonical(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return _UNKNOWN
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).compressed


def _signed(method: str, address: str, at: str) -> bytes:
    return b"\0".join((_DOMAIN, method.encode(), address.encode(), at.encode()))


__all__ = [
    "FORWARDER",
    "KEYS",
    "MAX_METADATA_BYTES",
    "ClaimSigner",
    "bind_caller_ip",
    "caller_ip",
    "claim_metadata",
    "claimed_ip",
    "client_ip",
    "unbind_caller_ip",
]
