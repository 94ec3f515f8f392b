"""TDX and SEV-SNP evidence through configfs-tsm, against a stand-in directory (not the kernel).

The stand-in (``tee_stand_ins.StandInConfigfsTSM``) is a temporary directory laid out like
``/sys/kernel/config/tsm/report`` whose ``outblob`` answers with the real fixture quote or report;
only the backend's mkdir and rmdir of an entry go to it, since on configfs those are what make
and remove the attribute files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tee_stand_ins import (
    SNP_REPORT_DATA_OFFSET,
    TDX_REPORT_DATA_OFFSET,
    StandInConfigfsTSM,
    snp_report,
    tdx_quote,
    unchanged,
    with_report_data_at,
)

from cloister.attestation.certificate import report_data_for
from cloister.attestation.producers import TSMBackend
from cloister.attestation.producers.configfs_tsm import ATTEMPTS
from cloister.attestation.producers.layouts import snp_report_data, tdx_report_data
from cloister.errors import AttestationError, ConfigurationError


def _key_report_data() -> bytes:
    return report_data_for(ec.generate_private_key(ec.SECP256R1()).public_key())


def test_tdx_quote_binds_the_service_key(tmp_path: Path) -> None:
    quote = tdx_quote()
    stand_in = StandInConfigfsTSM(tmp_path, "tdx_guest", with_report_data_at(quote, TDX_REPORT_DATA_OFFSET))
    report_data = _key_report_data()

    evidence = stand_in.backend("tdx").evidence(report_data)

    assert stand_in.requests == [report_data]  # inblob got the key's X‖Y, as the sim backend binds it
    assert evidence.tee_backend == "tdx" and evidence.signature == b"" and evidence.certificates == b""
    assert tdx_report_data(evidence.quote) == report_data
    assert len(evidence.quote) == len(quote) and evidence.quote[:TDX_REPORT_DATA_OFFSET] == quote[:568]
    assert list(tmp_path.iterdir()) == []  # the entry was removed


def test_snp_report_carries_the_host_certificate_table(tmp_path: Path) -> None:
    table = b"a certificate table as the host gave it"
    answer = with_report_data_at(snp_report(), SNP_REPORT_DATA_OFFSET)
    stand_in = StandInConfigfsTSM(tmp_path, "sev_guest", answer, auxblob=table)
    report_data = _key_report_data()

    evidence = stand_in.backend("sev-snp").evidence(report_data)

    assert evidence.tee_backend == "sev-snp" and evidence.certificates == table
    assert snp_report_data(evidence.quote) == report_data


def test_a_report_over_other_data_is_refused(tmp_path: Path) -> None:
    """The real fixtures carry their own report data: a producer that asked for ours must refuse them."""
    for name, provider, evidence in (("tdx", "tdx_guest", tdx_quote()), ("sev-snp", "sev_guest", snp_report())):
        stand_in = StandInConfigfsTSM(tmp_path / name, provider, unchanged(evidence))
        with pytest.raises(AttestationError, match=f"the {name} report's report data is not the 64 bytes"):
            stand_in.backend(name).evidence(_key_report_data())


def test_asking_for_the_fixtures_own_report_data_returns_it_unchanged(tmp_path: Path) -> None:
    quote = tdx_quote()
    stand_in = StandInConfigfsTSM(tmp_path, "tdx_guest", unchanged(quote))
    assert stand_in.backend("tdx").evidence(tdx_report_data(quote)).quote == quote


def test_another_writer_means_a_new_entry(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    quote = tdx_quote()
    answer = with_report_data_at(quote, TDX_REPORT_DATA_OFFSET)
    report_data = _key_report_data()
    stand_in = StandInConfigfsTSM(tmp_path / "once", "tdx_guest", answer, interfered=ATTEMPTS - 1)
    with caplog.at_level(logging.WARNING):
        assert tdx_report_data(stand_in.backend("tdx").evidence(report_data).quote) == report_data
    assert len(stand_in.entries) == ATTEMPTS and len(set(stand_in.entries)) == ATTEMPTS
    assert "changed under another writer" in caplog.text

    always = StandInConfigfsTSM(tmp_path / "always", "tdx_guest", answer, interfered=ATTEMPTS)
    with pytest.raises(AttestationError, match=f"other writers changed the report entry {ATTEMPTS} times"):
        always.backend("tdx").evidence(report_data)
    assert list((tmp_path / "always").iterdir()) == []


def test_the_provider_must_be_the_backends_guest_driver(tmp_path: Path) -> None:
    stand_in = StandInConfigfsTSM(tmp_path, "sev_guest", unchanged(snp_report()))
    with pytest.raises(ConfigurationError, match=r"needs the tdx_guest provider of configfs-tsm, but .* 'sev_guest'"):
        stand_in.backend("tdx").probe()
    stand_in.backend("sev-snp").probe()
    assert stand_in.requests == [] and list(tmp_path.iterdir()) == []  # probing makes no report
    with pytest.raises(AttestationError, match="came from 'sev_guest', not 'tdx_guest'"):
        stand_in.backend("tdx").evidence(_key_report_data())


def test_report_data_must_be_64_bytes(tmp_path: Path) -> None:
    stand_in = StandInConfigfsTSM(tmp_path, "tdx_guest", unchanged(tdx_quote()))
    with pytest.raises(ValueError, match="64 bytes"):
        stand_in.backend("tdx").evidence(b"short")
    with pytest.raises(ValueError, match="serves tdx and sev-snp, not 'sgx'"):
        TSMBackend("sgx", tmp_path)


def test_a_directory_that_is_not_configfs(tmp_path: Path) -> None:
    """On a plain directory mkdir makes an empty entry: the backend says so and cleans up."""
    with pytest.raises(ConfigurationError, match="is not configfs-tsm: a new report entry has no provider"):
        TSMBackend("tdx", tmp_path).probe()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigurationError, match=r"does not exist: configfs-tsm needs Linux 6\.7"):
        TSMBackend("sev-snp", tmp_path / "missing").evidence(bytes(64))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match=r"cannot make a report entry under .*file: Not a directory"):
        TSMBackend("tdx", tmp_path / "file").probe()
