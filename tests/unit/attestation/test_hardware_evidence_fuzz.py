"""Malformed evidence, collateral and certificates fail with AttestationError, never with another exception.

Seeded random byte flips, overwrites, insertions and truncations of the real fixtures (NOTICE.md),
then one test per input that once escaped as ``cryptography``'s, ``datetime``'s or the OS's own
error, or was accepted where it should not have been. A Nitro chain of our own (``_OwnNitroChain``)
reaches what only a validly signed document reaches: the payload's fields after the signature.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from shared_fixtures import TEE_EVIDENCE

from cloister.attestation.hardware.claims import Claims
from cloister.attestation.hardware.dcap import verify_sgx, verify_tdx
from cloister.attestation.hardware.evidence_files import decode_evidence
from cloister.attestation.hardware.nitro import verify_nitro
from cloister.attestation.hardware.snp import load_amd_certificate, pinned_asks, verify_snp
from cloister.attestation.hardware.tee_policy import load_tee_policy
from cloister.attestation.producers import GramineBackend, TSMBackend
from cloister.cli.attest_evidence import check_evidence
from cloister.errors import AttestationError, ConfigurationError

# Mutated names and serial numbers make cryptography warn (not raise) on load; that is not what is tested.
pytestmark = [
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning"),
]


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


SGX_QUOTE = (TEE_EVIDENCE / "sgx" / "sgx_quote").read_bytes()
SGX_COLLATERAL = (TEE_EVIDENCE / "sgx" / "sgx_quote_collateral.json").read_text()
TDX_QUOTE = (TEE_EVIDENCE / "tdx" / "tdx_quote").read_bytes()
TDX_COLLATERAL = (TEE_EVIDENCE / "tdx" / "tdx_quote_collateral.json").read_text()
SNP_DIR = TEE_EVIDENCE / "sev-snp"
SNP_REPORT = decode_evidence((SNP_DIR / "report_milan.hex").read_bytes())
VCEK_DER = (SNP_DIR / "vcek_milan.der").read_bytes()
VCEK = load_amd_certificate(VCEK_DER)
NITRO = decode_evidence((TEE_EVIDENCE / "nitro" / "nitro_attestation.b64").read_bytes())
SGX_AT, TDX_AT, SNP_AT = _utc("2025-07-01T00:00:00Z"), _utc("2025-07-01T00:00:00Z"), _utc("2024-01-01T00:00:00Z")
NITRO_AT = _utc("2024-09-07T14:37:39.545Z")
ROUNDS = 150


def _mutate(data: bytes, rng: random.Random) -> bytes:
    changed = bytearray(data)
    at = rng.randrange(len(changed))
    match rng.randrange(5):
        case 0:
            for _ in range(rng.randint(1, 8)):
                changed[rng.randrange(len(changed))] ^= 1 << rng.randrange(8)
        case 1:
            del changed[at:]
        case 2:  # bytes that mean much in CBOR and DER: huge lengths, indefinite items, tags
            changed[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x84, 0x1B, 0x5B, 0x9B, 0xBB, 0x9F, 0xD8, 0x3B])
        case 3:
            changed[at:at] = rng.randbytes(rng.randint(1, 16))
        case _:
            source = rng.randrange(len(changed))
            changed[at : at + 4] = changed[source : source + 4]
    return bytes(changed)


VERIFIERS: dict[str, tuple[bytes, Callable[[bytes], Claims]]] = {
    "sgx quote": (SGX_QUOTE, lambda q: verify_sgx(q, collateral=SGX_COLLATERAL, at=SGX_AT)),
    "tdx quote": (TDX_QUOTE, lambda q: verify_tdx(q, collateral=TDX_COLLATERAL, at=TDX_AT)),
    "sgx collateral": (SGX_COLLATERAL.encode(), lambda c: verify_sgx(SGX_QUOTE, collateral=c, at=SGX_AT)),
    "snp report": (SNP_REPORT, lambda r: verify_snp(r, vcek=VCEK, at=SNP_AT)),
    "snp vcek": (VCEK_DER, lambda v: verify_snp(SNP_REPORT, vcek=load_amd_certificate(v), at=SNP_AT)),
    "nitro document": (NITRO, lambda d: verify_nitro(d, at=NITRO_AT)),
}


@pytest.mark.parametrize("name", list(VERIFIERS))
def test_mutated_evidence_raises_only_attestation_error(name: str) -> None:
    original, verify = VERIFIERS[name]
    rng = random.Random(f"cloister {name}")
    refused = 0
    for _ in range(ROUNDS):
        mutated = _mutate(original, rng)
        try:
            verify(mutated)
        except AttestationError:
            refused += 1
        except ValueError:  # load_amd_certificate's documented error, before verify_snp is reached
            assert name == "snp vcek"
            refused += 1
        # Anything else propagates and fails the test. Some mutations verify: they hit bytes no
        # signature covers (the SNP report after its signature, PEM line breaks, the quote's copy
        # of Intel's root, which dcap-qvl replaces with its own).
    assert refused > ROUNDS // 2


def test_mutated_certificate_directories_raise_only_attestation_errors(tmp_path: Path) -> None:
    report = tmp_path / "report.hex"
    report.write_bytes((SNP_DIR / "report_milan.hex").read_bytes())
    originals = {
        path.name: load_amd_certificate(path.read_bytes()).public_bytes(Encoding.DER)
        for path in SNP_DIR.iterdir()
        if path.suffix in (".der", ".pem")
    }
    certs = tmp_path / "certs"
    certs.mkdir()
    rng = random.Random("cloister certificate directory")
    for _ in range(ROUNDS):
        target = rng.choice(sorted(originals))
        for name, der in originals.items():
            (certs / name).write_bytes(_mutate(der, rng) if name == target else der)
        with contextlib.suppress(AttestationError):
            check_evidence("sev-snp", report, at=SNP_AT, certs_dir=certs)


# Nitro: certificates in the cabundle that cryptography loads but cannot use


def _nitro_with_cabundle_certificate(index: int, change: Callable[[bytes], bytes]) -> bytes:
    protected, unprotected, payload, signature = cbor2.loads(NITRO)
    fields = cbor2.loads(payload)
    fields["cabundle"][index] = change(fields["cabundle"][index])
    return cbor2.dumps([protected, unprotected, cbor2.dumps(fields), signature])


_ECDSA_SHA384 = bytes.fromhex("06082a8648ce3d040303")


@pytest.mark.parametrize(
    ("what", "change"),
    [
        # once UnsupportedAlgorithm: Signature algorithm OID 1.2.840.10045.4.3.11 not recognized
        ("unknown signature algorithm", lambda der: der.replace(_ECDSA_SHA384, _ECDSA_SHA384[:-1] + b"\x0b")),
        # once InvalidVersion: 5 is not a valid X509 version
        ("X.509 version 6", lambda der: der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)),
        # a Name that does not parse
        ("subject not a name", lambda der: _break_subject(der)),
    ],
)
def test_nitro_cabundle_certificate_that_cryptography_cannot_use(what: str, change: Callable[[bytes], bytes]) -> None:
    document = _nitro_with_cabundle_certificate(1, change)
    with pytest.raises(AttestationError, match="malformed certificate"):
        verify_nitro(document, at=NITRO_AT)


def _break_subject(der: bytes) -> bytes:
    certificate = x509.load_der_x509_certificate(der)
    subject = certificate.subject.public_bytes()
    # The first attribute's SET becomes a SET of an INTEGER, which a Name cannot hold.
    assert subject[2] == 0x31
    broken = subject[:4] + b"\x02" + subject[5:]
    return der.replace(subject, broken, 1)


def test_nitro_document_with_trailing_bytes_is_refused() -> None:
    verify_nitro(NITRO, at=NITRO_AT)
    with pytest.raises(AttestationError, match="8 bytes follow the COSE_Sign1"):
        verify_nitro(NITRO + b"trailing", at=NITRO_AT)


class _OwnNitroChain:
    """Root -> intermediate -> leaf on P-384, and documents the leaf signs, as the NSM signs its own."""

    def __init__(self, *, intermediate_is_ca: bool = True, root_path_length: int | None = None) -> None:
        now = NITRO_AT
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._certificate("root", self.root_key, "root", self.root_key, True, root_path_length, now)
        self.intermediate = self._certificate(
            "intermediate", self.intermediate_key, "root", self.root_key, intermediate_is_ca, None, now
        )
        self.leaf = self._certificate("leaf", self.leaf_key, "intermediate", self.intermediate_key, False, None, now)

    @staticmethod
    def _certificate(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
        path_length: int | None,
        now: dt.datetime,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
            .sign(issuer_key, hashes.SHA384())
        )

    def document(self, **changes: object) -> bytes:
        fields: dict[str, object] = {
            "module_id": "i-test-enc",
            "digest": "SHA384",
            "timestamp": int(NITRO_AT.timestamp() * 1000),
            "pcrs": {index: bytes([index + 1]) * 48 for index in range(16)},
            "certificate": self.leaf.public_bytes(Encoding.DER),
            "cabundle": [c.public_bytes(Encoding.DER) for c in (self.root, self.intermediate)],
            "user_data": b"user data",
        }
        fields.update(changes)
        fields = {name: value for name, value in fields.items() if value is not None}
        protected, payload = cbor2.dumps({1: -35}), cbor2.dumps(fields)
        der = self.leaf_key.sign(cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return cbor2.dumps([protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])


def test_own_nitro_chain_verifies() -> None:
    """The control for the tests below: without their one change, the document verifies."""
    chain = _OwnNitroChain()
    claims = verify_nitro(chain.document(), at=NITRO_AT, root=chain.root)
    assert claims.report_data == b"user data" and not claims.debug


def test_nitro_chain_through_a_non_ca_certificate_is_refused() -> None:
    chain = _OwnNitroChain(intermediate_is_ca=False)
    with pytest.raises(AttestationError, match="CN=intermediate is not a CA"):
        verify_nitro(chain.document(), at=NITRO_AT, root=chain.root)


def test_nitro_chain_longer_than_the_root_allows_is_refused() -> None:
    chain = _OwnNitroChain(root_path_length=0)
    with pytest.raises(AttestationError, match="allows 0 CAs below it, the chain has 1"):
        verify_nitro(chain.document(), at=NITRO_AT, root=chain.root)


@pytest.mark.parametrize("timestamp", [2**62, -(2**62), 10**30])
def test_nitro_timestamp_beyond_any_date_is_refused(timestamp: int) -> None:
    # once OverflowError or ValueError from datetime, after the signature had verified
    chain = _OwnNitroChain()
    with pytest.raises(AttestationError, match=r"timestamp .* is not a time"):
        verify_nitro(chain.document(timestamp=timestamp), at=NITRO_AT, root=chain.root)


def test_nitro_document_without_pcr0_counts_as_debug() -> None:
    chain = _OwnNitroChain()
    pcrs = {index: bytes([index + 1]) * 48 for index in range(1, 16)}
    assert verify_nitro(chain.document(pcrs=pcrs), at=NITRO_AT, root=chain.root).debug
    assert verify_nitro(chain.document(pcrs={0: bytes(48), **pcrs}), at=NITRO_AT, root=chain.root).debug


# SEV-SNP: certificates from a directory the evidence's sender may fill


def test_snp_ask_with_an_unknown_key_type_is_passed_over() -> None:
    # once UnsupportedAlgorithm: Unknown key type, from the supplied ASK's public_key()
    ask = pinned_asks()[0]
    rsa_encryption = bytes.fromhex("06092a864886f70d010101")
    der = ask.public_bytes(Encoding.DER)
    assert der.count(rsa_encryption) == 1
    odd = load_amd_certificate(der.replace(rsa_encryption, rsa_encryption[:-1] + b"\x7f"))
    claims = verify_snp(SNP_REPORT, vcek=VCEK, at=SNP_AT, asks=[odd])
    assert claims.details["product"] == "Milan"


_VCEK_CLAIMS = tuple(e for e in VCEK.extensions if e.oid.dotted_string.startswith("1.3.6.1.4.1.3704.1."))
"""The real VCEK's TCB levels and chip id (AMD's arc 1.3.6.1.4.1.3704.1), which the report states too."""


def _own_snp_chain(
    *, ask_is_ca: bool, vcek_claims: bool = True
) -> tuple[bytes, x509.Certificate, x509.Certificate, x509.Certificate]:
    """A report signed by a VCEK of our own, under an ASK and ARK of our own: (report, vcek, ask, ark)."""
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    ark_key, ask_key = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())

    def certificate(
        name: str,
        key: object,
        issuer: str,
        issuer_key: rsa.RSAPrivateKey,
        ca: bool,
        extensions: tuple[x509.Extension[x509.ExtensionType], ...] = (),
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number())
            .not_valid_before(SNP_AT - dt.timedelta(days=1))
            .not_valid_after(SNP_AT + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
        return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=pss)

    ark = certificate("ARK-Milan", ark_key, "ARK-Milan", ark_key, True)
    ask = certificate("SEV-Milan", ask_key, "ARK-Milan", ark_key, ask_is_ca)
    vcek = certificate("SEV-VCEK", vcek_key, "SEV-Milan", ask_key, False, _VCEK_CLAIMS if vcek_claims else ())
    r, s = decode_dss_signature(vcek_key.sign(SNP_REPORT[:0x2A0], ec.ECDSA(hashes.SHA384())))
    report = SNP_REPORT[:0x2A0] + r.to_bytes(72, "little") + s.to_bytes(72, "little") + SNP_REPORT[0x330:]
    return report, vcek, ask, ark


def test_snp_vcek_under_an_ask_that_is_not_a_ca_is_refused() -> None:
    report, vcek, ask, ark = _own_snp_chain(ask_is_ca=True)
    assert verify_snp(report, vcek=vcek, at=SNP_AT, asks=[ask], arks=[ark]).details["product"] == "Milan"
    report, vcek, ask, ark = _own_snp_chain(ask_is_ca=False)
    with pytest.raises(AttestationError, match="SEV-Milan is not a CA"):
        verify_snp(report, vcek=vcek, at=SNP_AT, asks=[ask], arks=[ark])


def test_snp_vcek_that_certifies_no_tcb_or_chip_is_refused() -> None:
    report, vcek, ask, ark = _own_snp_chain(ask_is_ca=True, vcek_claims=False)
    with pytest.raises(AttestationError, match="the VCEK certifies no TCB level for"):
        verify_snp(report, vcek=vcek, at=SNP_AT, asks=[ask], arks=[ark])


def test_unusable_certificates_in_the_directory_are_skipped(tmp_path: Path) -> None:
    # once InvalidVersion escaping load_amd_certificate, and ValueError from the lazy subject
    report = tmp_path / "report.hex"
    report.write_bytes((SNP_DIR / "report_milan.hex").read_bytes())
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "vcek.der").write_bytes(VCEK_DER)
    (certs / "version.der").write_bytes(VCEK_DER.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1))
    (certs / "subject.der").write_bytes(_break_subject(VCEK_DER))
    for name in ("version.der", "subject.der"):
        with pytest.raises(ValueError):
            load_amd_certificate((certs / name).read_bytes())
    check = check_evidence("sev-snp", report, at=SNP_AT, certs_dir=certs)
    assert check.claims.platform == "sev-snp"


# SGX and TDX: what dcap-qvl accepts or never reads


def _quote_with_root_version(quote: bytes, version: int) -> bytes:
    """The quote with the X.509 version of the last certificate in its PCK chain (Intel's root) changed."""
    blocks = list(re.finditer(rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", quote, re.S))
    block = blocks[-1]
    der = base64.b64decode(block.group(1))
    changed = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01" + bytes([version]), 1)
    text = base64.b64encode(changed)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + b"\n"
    assert len(lines) == len(block.group(1))
    return quote[: block.start(1)] + lines + quote[block.end(1) :]


def test_quote_whose_unread_root_copy_does_not_parse_is_refused() -> None:
    # dcap-qvl pins Intel's root and never reads the quote's copy; the window did, and raised InvalidVersion.
    quote = _quote_with_root_version(SGX_QUOTE, 5)
    with pytest.raises(AttestationError, match="does not parse"):
        verify_sgx(quote, collateral=SGX_COLLATERAL, at=SGX_AT)


def test_collateral_that_is_not_utf8_is_refused() -> None:
    # once UnicodeDecodeError
    with pytest.raises(AttestationError, match="not UTF-8"):
        verify_sgx(SGX_QUOTE, collateral=b"\xff" + SGX_COLLATERAL.encode(), at=SGX_AT)


def test_a_time_before_1970_is_refused() -> None:
    # once OverflowError: can't convert negative int to unsigned
    with pytest.raises(AttestationError, match="before 1970"):
        verify_tdx(TDX_QUOTE, collateral=TDX_COLLATERAL, at=_utc("1969-12-31T23:59:59Z"))


# Policies and producers


def test_policy_age_beyond_a_timedelta_is_a_configuration_error(tmp_path: Path) -> None:
    # once OverflowError: Python int too large to convert to C int
    path = tmp_path / "policy.toml"
    path.write_text("[tee_policy]\nmax_evidence_age_seconds = 1e300\n")
    with pytest.raises(ConfigurationError, match="tee_policy"):
        load_tee_policy(path)


class _BrokenEntryTSM(TSMBackend):
    """configfs-tsm whose new entries hold ``files``: name -> content, or None for one that cannot be written."""

    def __init__(self, root: Path, files: dict[str, bytes | None]) -> None:
        super().__init__("tdx", root)
        self.files = files

    def _make_entry(self, entry: Path) -> None:
        entry.mkdir()
        for name, content in self.files.items():
            if content is None:
                (entry / name).mkdir()  # opening it to write fails, as a write the kernel refuses does
            else:
                (entry / name).write_bytes(content)

    def _remove_entry(self, entry: Path) -> None:
        shutil.rmtree(entry)


def test_configfs_provider_that_is_not_text(tmp_path: Path) -> None:
    # once UnicodeDecodeError
    backend = _BrokenEntryTSM(tmp_path, {"provider": b"tdx_guest\xff\n", "generation": b"0\n"})
    with pytest.raises(ConfigurationError, match="not text"):
        backend.probe()


def test_configfs_inblob_the_kernel_refuses(tmp_path: Path) -> None:
    # once a bare OSError (here IsADirectoryError) out of evidence()
    backend = _BrokenEntryTSM(tmp_path, {"provider": b"tdx_guest\n", "generation": b"0\n", "inblob": None})
    with pytest.raises(AttestationError, match="configfs-tsm refused inblob"):
        backend.evidence(bytes(64))
    assert list(tmp_path.iterdir()) == []


def test_gramine_attestation_type_that_is_not_text(tmp_path: Path) -> None:
    # once UnicodeDecodeError
    (tmp_path / "attestation_type").write_bytes(b"dcap\xff")
    with pytest.raises(ConfigurationError, match="not text"):
        GramineBackend(tmp_path).probe()


def _negative_serial(der: bytes) -> bytes:
    """The certificate with its serial number's sign bit set: the same length, now negative."""
    at = der.index(b"\xa0\x03\x02\x01\x02") + 5  # after the version, the serial's INTEGER
    assert der[at] == 0x02
    return der[: at + 2] + bytes([der[at + 2] | 0x80]) + der[at + 3 :]


def test_nitro_cabundle_certificate_with_a_negative_serial_is_refused_as_ours() -> None:
    document = _nitro_with_cabundle_certificate(1, _negative_serial)
    with pytest.raises(AttestationError, match="cabundle's serial number is not positive"):
        verify_nitro(document, at=NITRO_AT)


def test_quote_whose_unread_root_copy_has_a_negative_serial_is_refused_as_ours() -> None:
    blocks = list(re.finditer(rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", SGX_QUOTE, re.S))
    text = base64.b64encode(_negative_serial(base64.b64decode(blocks[-1].group(1))))
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + b"\n"
    quote = SGX_QUOTE[: blocks[-1].start(1)] + lines + SGX_QUOTE[blocks[-1].end(1) :]
    with pytest.raises(AttestationError, match="certificate chain's serial number is not positive"):
        verify_sgx(quote, collateral=SGX_COLLATERAL, at=SGX_AT)
