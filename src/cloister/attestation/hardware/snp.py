"""AMD SEV-SNP attestation reports: ARK -> ASK -> VCEK -> report, checked signature by signature.

AMD's chain does not fit an RFC 5280 path validator: the VCEK has serial number 0 and no
authority or subject key identifiers. So each link is checked explicitly (RSASSA-PSS, SHA-384,
salt 48), every certificate's validity window at the given time, the ARK against the pinned
roots (``roots/``), and finally the report's ECDSA P-384 signature under the VCEK.
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

from cloister.attestation.hardware.claims import Claims, TCBStatus, evidence_digest, require_aware
from cloister.errors import AttestationError

__all__ = ["PRODUCTS", "SNPCertificates", "load_amd_certificate", "pinned_arks", "pinned_asks", "verify_snp"]

PRODUCTS = ("milan", "genoa", "turin")
REPORT_LENGTH = 0x4A0
_SIGNED = slice(0x000, 0x2A0)
_SIG_R = slice(0x2A0, 0x2E8)
_SIG_S = slice(0x2E8, 0x330)
_DEBUG_POLICY_BIT = 1 << 19
_ECDSA_P384_SHA384 = 1
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_SERIAL_WARNING = r"Parsed a serial number which wasn't positive"
_MALFORMED = (ValueError, TypeError, x509.InvalidVersion, x509.DuplicateExtension, UnsupportedAlgorithm)
"""What ``cryptography`` raises, at load or when a field is first read, for a certificate it cannot use."""
# VCEK extensions (AMD's "Versioned Chip Endorsement Key" specification): TCB components and chip id.
_OID_TCB = {
    "boot_loader": "1.3.6.1.4.1.3704.1.3.1",
    "tee": "1.3.6.1.4.1.3704.1.3.2",
    "snp": "1.3.6.1.4.1.3704.1.3.3",
    "microcode": "1.3.6.1.4.1.3704.1.3.8",
}
_OID_FMC = "1.3.6.1.4.1.3704.1.3.9"
_OID_HWID = "1.3.6.1.4.1.3704.1.4"


def load_amd_certificate(data: bytes) -> x509.Certificate:
    """A certificate (PEM or DER) from AMD's KDS, tolerating the VCEK's serial number 0.

    ``cryptography`` warns that a zero serial number breaks RFC 5280 (pyca/cryptography#13287);
    every VCEK AMD issues has one, so exactly that warning is silenced here, and only here.

    Raises:
        ValueError: not a certificate, or one whose names or extensions do not parse.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, message=_SERIAL_WARNING)
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                certificate = x509.load_pem_x509_certificate(data)
            else:
                certificate = x509.load_der_x509_certificate(data)
        except _MALFORMED as exc:
            raise ValueError(f"not a usable certificate: {exc}") from None
    if not _parses(certificate):
        raise ValueError("a certificate whose names or extensions do not parse")
    return certificate


def _parses(certificate: x509.Certificate) -> bool:
    """Whether the fields read here parse: ``cryptography`` parses them on first use, not at load."""
    try:
        _ = (certificate.subject, certificate.issuer, certificate.extensions)
    except _MALFORMED:
        return False
    return True


def pinned_arks() -> list[x509.Certificate]:
    """AMD's root keys that Cloister ships, one per product (Milan, Genoa, Turin)."""
    return [_shipped(f"amd_ark_{product}.pem") for product in PRODUCTS]


def pinned_asks() -> list[x509.Certificate]:
    """AMD's SEV keys (intermediates) that Cloister ships, so a VCEK alone suffices."""
    return [_shipped(f"amd_ask_{product}.pem") for product in PRODUCTS]


def _shipped(name: str) -> x509.Certificate:
    return load_amd_certificate(resources.files(__package__).joinpath("roots", name).read_bytes())


@dataclass(frozen=True)
class SNPCertificates:
    """What a directory of AMD certificates holds, sorted by what each certificate is, not by its file name."""

    vceks: tuple[x509.Certificate, ...] = ()
    asks: tuple[x509.Certificate, ...] = ()
    arks: tuple[x509.Certificate, ...] = ()

    @classmethod
    def sort(cls, certificates: Iterable[x509.Certificate]) -> SNPCertificates:
        vceks, asks, arks = [], [], []
        for certificate in filter(_parses, certificates):
            subject = _common_name(certificate.subject)
            if subject in ("SEV-VCEK", "SEV-VLEK"):
                vceks.append(certificate)
            elif subject.startswith("ARK-") and certificate.subject == certificate.issuer:
                arks.append(certificate)
            elif subject.startswith("SEV-") and _common_name(certificate.issuer).startswith("ARK-"):
                asks.append(certificate)
        return cls(tuple(vceks), tuple(asks), tuple(arks))


def verify_snp(
    report: bytes,
    *,
    vcek: x509.Certificate,
    at: dt.datetime,
    asks: Sequence[x509.Certificate] = (),
    arks: Sequence[x509.Certificate] | None = None,
) -> Claims:
    """Claims of an SEV-SNP attestation report signed by ``vcek``, verified at ``at``.

    Args:
        report: the raw report (1,184 bytes).
        vcek: the chip's VCEK (load it with :func:`load_amd_certificate`).
        at: the time to verify at.
        asks: intermediates to try before the shipped ones.
        arks: the roots to trust; None: the pinned AMD ARKs.

    Raises:
        AttestationError: with the reason.
    """
    at = require_aware(at)
    if not _parses(vcek):
        raise AttestationError("the VCEK's names or extensions do not parse")
    if len(report) != REPORT_LENGTH:
        raise AttestationError(f"an SEV-SNP report is {REPORT_LENGTH} bytes, got {len(report)}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", report, 0)
    vmpl, algorithm = struct.unpack_from("<II", report, 0x30)
    if version < 2:
        raise AttestationError(f"SEV-SNP report version {version} is not supported (2 or later)")
    if algorithm != _ECDSA_P384_SHA384:
        raise AttestationError(f"SEV-SNP report signature algorithm {algorithm} is not ECDSA P-384 with SHA-384")
    chain = _chain(vcek, asks, pinned_arks() if arks is None else arks, at)
    product = _common_name(chain[-1].subject).removeprefix("ARK-").lower()
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AttestationError("the VCEK's key is not an ECDSA P-384 key")
    r = int.from_bytes(report[_SIG_R], "little")
    s = int.from_bytes(report[_SIG_S], "little")
    try:
        key.verify(encode_dss_signature(r, s), report[_SIGNED], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise AttestationError("the SEV-SNP report's signature does not verify under the VCEK") from None
    reported = _tcb(report[0x180:0x188], product)
    certified = _vcek_tcb(vcek)
    uncertified = sorted(set(reported) - set(certified))
    if uncertified:  # every VCEK AMD issues certifies each component: one that does not is refused
        raise AttestationError(f"the VCEK certifies no TCB level for {', '.join(uncertified)}")
    if any(reported.get(name) != value for name, value in certified.items()):
        raise AttestationError(f"the VCEK certifies TCB {certified}, but the report states {reported}")
    chip_id = report[0x1A0:0x1E0]
    hwid = _extension(vcek, _OID_HWID)
    if hwid is None:
        raise AttestationError("the VCEK names no chip (it has no hwID extension)")
    if any(chip_id) and hwid != chip_id:  # all zero: the guest policy masks the chip id
        raise AttestationError("the report's chip id is not the VCEK's")
    return Claims(
        platform="sev-snp",
        measurements={
            "measurement": report[0x90:0xC0],
            "host_data": report[0xC0:0xE0],
            "id_key_digest": report[0xE0:0x110],
            "author_key_digest": report[0x110:0x140],
        },
        report_data=report[0x50:0x90],
        tcb_status=TCBStatus.UNRATED,
        tcb_levels=reported,
        debug=bool(policy & _DEBUG_POLICY_BIT),
        not_before=max(c.not_valid_before_utc for c in chain),
        not_after=min(c.not_valid_after_utc for c in chain),
        evidence_digest=evidence_digest(report),
        details={
            "product": product.capitalize(),
            "report version": str(version),
            "guest policy": f"0x{policy:x}",
            "guest svn": str(guest_svn),
            "vmpl": str(vmpl),
            "chip id": chip_id.hex(),
        },
    )


def _chain(
    vcek: x509.Certificate, asks: Sequence[x509.Certificate], arks: Sequence[x509.Certificate], at: dt.datetime
) -> list[x509.Certificate]:
    """[VCEK, ASK, ARK], each link's signature and each window checked; the first complete chain wins."""
    _check_window(vcek, at, "VCEK")
    failures = []
    for ask in [*asks, *pinned_asks()]:
        if not _parses(ask) or ask.subject != vcek.issuer:
            continue
        if not _is_ca(ask):
            failures.append(f"{_common_name(ask.subject)} is not a CA")
            continue
        if not _signed_by(vcek, ask):
            failures.append(f"{_common_name(ask.subject)} did not sign the VCEK")
            continue
        for ark in arks:
            if ark.subject != ask.issuer:
                continue
            if not _signed_by(ark, ark):
                failures.append(f"{_common_name(ark.subject)} is not self-signed")
            elif not _signed_by(ask, ark):
                failures.append(f"{_common_name(ark.subject)} did not sign {_common_name(ask.subject)}")
            else:
                _check_window(ask, at, "ASK")
                _check_window(ark, at, "ARK")
                return [vcek, ask, ark]
    reason = "; ".join(failures) or f"no trusted AMD root issues {_common_name(vcek.issuer)}, the VCEK's issuer"
    raise AttestationError(f"the VCEK does not chain to a trusted AMD root: {reason}")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        key = issuer.public_key()
    except _MALFORMED:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(certificate.signature, certificate.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _check_window(certificate: x509.Certificate, at: dt.datetime, role: str) -> None:
    if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
        raise AttestationError(
            f"the {role} is valid from {certificate.not_valid_before_utc.isoformat()} to "
            f"{certificate.not_valid_after_utc.isoformat()}, not at {at.isoformat()}"
        )


def _tcb(raw: bytes, product: str) -> dict[str, int]:
    """A TCB_VERSION: Milan and Genoa put the boot loader first, Turin starts with the FMC."""
    if product == "turin":
        return {"fmc": raw[0], "boot_loader": raw[1], "tee": raw[2], "snp": raw[3], "microcode": raw[7]}
    return {"boot_loader": raw[0], "tee": raw[1], "snp": raw[6], "microcode": raw[7]}


def _vcek_tcb(vcek: x509.Certificate) -> dict[str, int]:
    levels = {}
    for name, oid in [*_OID_TCB.items(), ("fmc", _OID_FMC)]:
        value = _extension(vcek, oid)
        if value is not None:
            levels[name] = _der_integer(value)
    return levels


def _extension(certificate: x509.Certificate, oid: str) -> bytes | None:
    try:
        extension = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _der_integer(value: bytes) -> int:
    """AMD stores each TCB component as a DER INTEGER (tag 2, short length)."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise AttestationError("the VCEK's TCB extension is not a DER integer")
    return int.from_bytes(value[2:], "big")


def _common_name(name: x509.Name) -> str:
    attributes = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else ""
