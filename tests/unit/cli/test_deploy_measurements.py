"""The measurements file of ``cloister deploy init --measurements`` and ``deploy measure``: checked strictly,
and a deployment's identities are changed only for its own platform and only over a file its auditor signed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloister.attestation.deployment import Deployment
from cloister.cli.deployment_plan import ALL_SERVICES
from cloister.cli.main import main
from cloister.cli.measurements import read_measurements
from cloister.config import SERVICES
from cloister.errors import ConfigurationError

HOST = "one=127.0.0.1:" + ",".join(ALL_SERVICES)
TDX = {name: f"{index:02x}" * 48 for index, name in enumerate(("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mr_seam"))}


def _cloister(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _file(tmp_path: Path, *images: Mapping[str, object]) -> Path:
    lines = []
    for image in images:
        lines.append("[[image]]")
        for key, value in image.items():
            rendered = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, list) else f'"{value}"'
            lines.append(f"{key} = {rendered}")
    path = tmp_path / "measurements.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_maps_each_image_for_its_services(tmp_path: Path) -> None:
    path = _file(tmp_path, {"services": ["frontend", "storage"], **TDX}, {"services": ["execution"], **TDX})
    images = read_measurements(path, "tdx")
    identities = [identity for image in images for identity in image.identities()]
    digest = hashlib.sha256(b"".join(bytes.fromhex(TDX[n]) for n in ("mr_td", "rtmr0", "rtmr1", "rtmr2", "rtmr3")))
    assert [i.name for i in identities] == [
        "teaclave_frontend_service",
        "teaclave_storage_service",
        "teaclave_execution_service",
    ]
    assert {(i.platform, i.mr_enclave, i.mr_signer) for i in identities} == {
        ("tdx", digest.digest(), hashlib.sha256(bytes.fromhex(TDX["mr_seam"])).digest())
    }


@pytest.mark.parametrize(
    ("image", "platform", "message"),
    [
        ({"services": ["frontend"], **{k: v for k, v in TDX.items() if k != "mr_seam"}}, "tdx", "mr_seam is missing"),
        ({"services": ["frontend"], **TDX, "rtmr3": "00" * 47}, "tdx", "rtmr3 must be 48 bytes as 96 hex digits"),
        ({"services": ["frontend"], **TDX, "rtmr3": "zz" * 48}, "tdx", "rtmr3 must be 48 bytes"),
        ({"services": ["frontend"], **TDX, "mr_config_id": "00" * 48}, "tdx", "'mr_config_id' is not part of a tdx"),
        ({"services": ["frontend"], "platform": "sev-snp", **TDX}, "tdx", "platform 'sev-snp', but .* is tdx"),
        ({"services": ["frontend"], **TDX}, "sev-snp", "'mr_seam' is not part of a sev-snp identity"),
        ({"services": ["frontend"], **TDX}, "sim", "measurements are for TEE hardware"),
        ({"services": ["attestation"], **TDX}, "tdx", "'attestation' is not a service"),
        ({"services": [], **TDX}, "tdx", "services must list services"),
        ({"services": ["frontend", "frontend"], **TDX}, "tdx", "lists a service twice"),
        (
            {"services": ["frontend"], "mr_enclave": "00" * 32, "mr_signer": "00" * 31},
            "sgx",
            "mr_signer must be 32 bytes",
        ),
        (
            {"services": ["frontend"], "pcr0": "00" * 48, "pcr1": "00" * 48, "pcr2": "00" * 48},
            "nitro",
            "pcr8 is missing",
        ),
    ],
)
def test_a_wrong_image_is_refused(tmp_path: Path, image: dict[str, object], platform: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        read_measurements(_file(tmp_path, image), platform)


def test_a_service_in_two_images_or_no_image_at_all_is_refused(tmp_path: Path) -> None:
    twice = _file(tmp_path, {"services": ["frontend"], **TDX}, {"services": ["storage", "frontend"], **TDX})
    with pytest.raises(ConfigurationError, match="frontend is in two images"):
        read_measurements(twice, "tdx")
    (tmp_path / "empty.toml").write_text('title = "none"\n')
    with pytest.raises(ConfigurationError, match="unknown key 'title'"):
        read_measurements(tmp_path / "empty.toml", "tdx")


def test_init_needs_every_service_measured_and_a_tee(tmp_path: Path) -> None:
    partial = _file(tmp_path, {"services": [s for s in SERVICES if s != "execution"], **TDX})
    refused = _cloister("deploy", "init", tmp_path / "d", "--host", HOST, "--tee", "tdx", "--measurements", partial)
    assert refused.exit_code == 1 and "the measurements leave out execution" in refused.output
    assert not (tmp_path / "d").exists()  # checked before anything is written
    sim = _cloister("deploy", "init", tmp_path / "d", "--host", HOST, "--measurements", partial)
    assert sim.exit_code == 2 and "give --tee" in sim.output
    hosts = tmp_path / "hosts.toml"
    placed = ", ".join(f'"{s}"' for s in ALL_SERVICES)
    hosts.write_text(f'tee_backend = "sev-snp"\n[hosts.one]\naddress = "127.0.0.1"\nservices = [{placed}]\n')
    conflict = _cloister("deploy", "init", tmp_path / "d", "--hosts", hosts, "--tee", "tdx")
    assert conflict.exit_code == 2 and "says tee_backend = 'sev-snp'" in conflict.output


def test_a_hardware_deployment_changes_identities_only_by_measurement(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    assert _cloister("deploy", "init", directory, "--host", HOST, "--tee", "tdx").exit_code == 0
    resign = _cloister("deploy", "sign", directory)  # re-measuring the installed code means sim identities
    assert resign.exit_code == 1 and "cloister deploy measure" in resign.output

    all_services = _file(tmp_path, {"services": list(SERVICES), **TDX})
    measured = _cloister("deploy", "measure", directory, "--measurements", all_services)
    assert measured.exit_code == 0, measured.output
    info, _ = Deployment(directory / "attestation").verified_enclave_info()
    assert {i.platform for i in info.identities()} == {"tdx"}

    snp = {"services": ["frontend"], "measurement": "00" * 48, "id_key_digest": "00" * 48}
    wrong = _cloister("deploy", "measure", directory, "--measurements", _file(tmp_path, snp))
    assert wrong.exit_code == 1 and "is not part of a tdx identity" in wrong.output
    named = _cloister("deploy", "measure", directory, "--measurements", _file(tmp_path, {**snp, "platform": "sev-snp"}))
    assert named.exit_code == 1 and "platform 'sev-snp', but the deployment's TEE is tdx" in named.output

    path = directory / "attestation" / "enclave_info.toml"
    path.write_bytes(path.read_bytes().replace(b'platform = "tdx"', b'platform = "sgx"', 1))
    all_services = _file(tmp_path, {"services": list(SERVICES), **TDX})
    tampered = _cloister("deploy", "measure", directory, "--measurements", all_services)
    assert tampered.exit_code == 1 and "does not verify" in tampered.output  # never re-signed over a change


def test_measure_needs_one_source_and_known_services(tmp_path: Path) -> None:
    evidence = tmp_path / "quote.bin"
    evidence.write_bytes(b"\0")
    neither = _cloister("deploy", "measure", tmp_path)
    assert neither.exit_code == 2 and "give either --measurements FILE or --from-evidence FILE" in neither.output
    no_kind = _cloister("deploy", "measure", tmp_path, "--from-evidence", evidence, "--services", "all")
    assert no_kind.exit_code == 2 and "needs --kind and --services" in no_kind.output
    unknown = _cloister("deploy", "measure", tmp_path, "--from-evidence", evidence, "--kind", "tdx", "--services", "db")
    assert unknown.exit_code == 2 and "--services: db is not a service" in unknown.output
