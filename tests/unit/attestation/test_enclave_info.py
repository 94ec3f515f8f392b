"""``enclave_info.toml``: the sim format unchanged, hardware identities with a platform, strict parsing,
and recognition of peers that share one measurement (a confidential VM or Nitro image)."""

from __future__ import annotations

import pytest

from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo
from cloister.errors import AttestationError

E, S = bytes(range(32)), bytes(range(32, 64))
VM, SEAM = b"\x11" * 32, b"\x22" * 32
FRONTEND, MANAGEMENT, STORAGE, EXECUTION = (
    f"teaclave_{s}_service" for s in ("frontend", "management", "storage", "execution")
)


def test_a_sim_identity_is_written_exactly_as_teaclave_wrote_it() -> None:
    raw = EnclaveInfo.render([EnclaveIdentity(FRONTEND, E, S)])
    assert raw == f'[{FRONTEND}]\nmr_enclave = "{E.hex()}"\nmr_signer = "{S.hex()}"\n'.encode()
    assert EnclaveInfo.parse(raw).identities() == [EnclaveIdentity(FRONTEND, E, S, "sim")]


def test_a_teaclave_file_parses() -> None:
    raw = f'[teaclave_authentication_service]\nmr_enclave = "{E.hex().upper()}"\nmr_signer  = "{S.hex()}"\n'
    (identity,) = EnclaveInfo.parse(raw.encode()).identities()
    assert identity == EnclaveIdentity("teaclave_authentication_service", E, S)


def test_a_hardware_identity_round_trips_with_its_platform() -> None:
    identities = [EnclaveIdentity(FRONTEND, VM, SEAM, "tdx"), EnclaveIdentity(STORAGE, E, S, "sev-snp")]
    raw = EnclaveInfo.render(identities)
    assert f'[{FRONTEND}]\nplatform = "tdx"\nmr_enclave = "{VM.hex()}"'.encode() in raw
    assert EnclaveInfo.parse(raw).identities() == identities


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'[x]\nmr_enclave = "{E.hex()}"\n', "mr_signer must be 64 hex digits"),
        (f'[x]\nmr_enclave = "{E.hex()[:-2]}"\nmr_signer = "{S.hex()}"\n', "mr_enclave must be 64 hex digits"),
        (f'[x]\nmr_enclave = "{E.hex()}00"\nmr_signer = "{S.hex()}"\n', "mr_enclave must be 64 hex digits"),
        (f'[x]\nmr_enclave = "{E.hex()[:-1]}g"\nmr_signer = "{S.hex()}"\n', "mr_enclave must be 64 hex digits"),
        (f'[x]\nmr_enclave = "{E.hex()[:62]} 1f"\nmr_signer = "{S.hex()}"\n', "mr_enclave must be 64 hex digits"),
        (f'[x]\nmr_enclave = 5\nmr_signer = "{S.hex()}"\n', "mr_enclave must be 64 hex digits"),
        (f'[x]\nplatform = "sim"\nmr_enclave = "{E.hex()}"\nmr_signer = "{S.hex()}"\n', "platform must be one of"),
        (f'[x]\nplatform = "TDX"\nmr_enclave = "{E.hex()}"\nmr_signer = "{S.hex()}"\n', "platform must be one of"),
        (f'[x]\nplatform = 4\nmr_enclave = "{E.hex()}"\nmr_signer = "{S.hex()}"\n', "platform must be one of"),
        (f'[x]\nservice = "x"\nmr_enclave = "{E.hex()}"\nmr_signer = "{S.hex()}"\n', "unknown key 'service'"),
        ('x = "not a table"\n', "x is not a table"),
        ("[x\n", "malformed"),
    ],
)
def test_a_malformed_identity_is_refused(text: str, message: str) -> None:
    with pytest.raises(AttestationError, match=message):
        EnclaveInfo.parse(text.encode())


def test_one_name_twice_is_refused() -> None:
    with pytest.raises(AttestationError, match="twice"):
        EnclaveInfo([EnclaveIdentity(FRONTEND, E, S), EnclaveIdentity(FRONTEND, VM, SEAM, "tdx")], b"")


def _shared_vm() -> EnclaveInfo:
    """Frontend, management and storage in one TDX image; execution in another; a sim identity with E."""
    identities = [
        EnclaveIdentity(FRONTEND, VM, SEAM, "tdx"),
        EnclaveIdentity(MANAGEMENT, VM, SEAM, "tdx"),
        EnclaveIdentity(STORAGE, VM, SEAM, "tdx"),
        EnclaveIdentity(EXECUTION, E, SEAM, "tdx"),
        EnclaveIdentity("teaclave_scheduler_service", E, S),
    ]
    return EnclaveInfo(identities, EnclaveInfo.render(identities))


def test_a_shared_measurement_is_told_apart_by_the_certified_name() -> None:
    info = _shared_vm()
    for name in (FRONTEND, MANAGEMENT, STORAGE):
        assert info.recognise("tdx", VM, SEAM, name, [name]).name == name
    with pytest.raises(AttestationError, match=f"peer is {FRONTEND}, expected {STORAGE}"):
        info.recognise("tdx", VM, SEAM, FRONTEND, [STORAGE])  # inbound rules hold within the image
    with pytest.raises(AttestationError, match="report names none of them"):
        info.recognise("tdx", VM, SEAM, None, [STORAGE])


def test_a_name_listed_with_another_measurement_is_refused() -> None:
    info = _shared_vm()
    with pytest.raises(AttestationError, match=f"certified as {EXECUTION}, but .* for {FRONTEND}, {MANAGEMENT}"):
        info.recognise("tdx", VM, SEAM, EXECUTION, [EXECUTION])  # the shared image claims execution
    with pytest.raises(AttestationError, match=f"certified as {STORAGE}, but .* for {EXECUTION} only"):
        info.recognise("tdx", E, SEAM, STORAGE, [STORAGE])  # the execution image claims storage
    with pytest.raises(AttestationError, match="certified as teaclave_nobody_service"):
        info.recognise("tdx", VM, SEAM, "teaclave_nobody_service", ["teaclave_nobody_service"])


def test_the_platform_is_part_of_the_identity() -> None:
    info = _shared_vm()
    for platform in ("sev-snp", "sgx", "nitro", "sim", "sgx-dcap"):
        with pytest.raises(AttestationError, match=f"peer's {platform} measurement is not in .* listed for tdx only"):
            info.recognise(platform, VM, SEAM, STORAGE, [STORAGE])
    # A sim identity matches simulated reports and Teaclave's unlabelled ones, never hardware.
    scheduler = "teaclave_scheduler_service"
    for platform in ("sim", "sgx-epid", "sgx-dcap"):
        assert info.recognise(platform, E, S, None, [scheduler]).name == scheduler
    for platform in ("sgx", "tdx", "sev-snp", "nitro"):
        with pytest.raises(AttestationError, match="listed for sim only"):
            info.recognise(platform, E, S, scheduler, [scheduler])
    with pytest.raises(AttestationError, match=r"peer's measurement is not in enclave_info\.toml"):
        info.recognise("tdx", bytes(32), SEAM, STORAGE, [STORAGE])


def test_a_unique_measurement_needs_no_name_but_a_wrong_name_is_refused() -> None:
    info = _shared_vm()
    assert info.recognise("tdx", E, SEAM, None, [EXECUTION]).name == EXECUTION
    with pytest.raises(AttestationError, match=f"certified as {FRONTEND}"):
        info.recognise("tdx", E, SEAM, FRONTEND, [FRONTEND, EXECUTION])
