"""The deployment plan, ``deploy init`` and the bundles: each host gets its own keys and nothing more."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cloister.attestation.deployment import Deployment
from cloister.cli.bundles import bundle_files, init_deployment, sign_identities, unpack_bundle, write_bundle
from cloister.cli.deployment_plan import DeploymentPlan
from cloister.config import load_settings
from cloister.errors import AttestationError, ConfigurationError

THREE_HOSTS: dict[str, Any] = {
    "hosts": {
        "alpha": {"address": "10.0.0.1", "services": ["attestation", "storage", "management", "access_control"]},
        "beta": {"address": "frontend.example", "services": ["authentication", "frontend", "scheduler"]},
        "gamma": {"address": "10.0.0.3", "services": ["execution"], "settings": {"execution": {"labels": ["gpu"]}}},
    }
}


def _plan(**changes: Any) -> DeploymentPlan:
    return DeploymentPlan.parse({**THREE_HOSTS, **changes}, "hosts.toml")


def test_every_host_dials_each_endpoint_where_the_plan_puts_it(tmp_path: Path) -> None:
    plan = _plan()
    for name in plan.hosts:
        (tmp_path / f"{name}.toml").write_text(plan.host_config(name, plan.hosts[name].services))
    gamma = load_settings(tmp_path / "gamma.toml", {})
    assert gamma.endpoint("frontend").address == "frontend.example:7777"
    assert gamma.endpoint("storage").address == "10.0.0.1:17778"
    assert gamma.execution.labels == ("gpu",)
    beta = load_settings(tmp_path / "beta.toml", {})
    assert beta.endpoint("frontend").bind_address == "0.0.0.0:7777"  # a named host listens everywhere
    assert beta.endpoint("storage").listen is None  # not beta's to serve
    alpha = load_settings(tmp_path / "alpha.toml", {})
    assert alpha.endpoint("storage").bind_address == "10.0.0.1:17778"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hosts": {"a": {"address": "10.0.0.1", "services": ["frontend"]}}}, "no host runs attestation"),
        ({"ports": {"storage": 17781}}, "would listen on port 17781 for both attestation and storage"),
        ({"ports": {"frontends": 1}}, "frontends is not an endpoint"),
        ({"tee_backend": "sgx2"}, "tee_backend must be one of"),
    ],
)
def test_a_plan_that_cannot_work_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _plan(**change)


def test_a_listening_service_on_two_hosts_needs_an_address_reaching_both() -> None:
    hosts = {**THREE_HOSTS["hosts"], "delta": {"address": "10.0.0.4", "services": ["frontend", "execution"]}}
    with pytest.raises(ConfigurationError, match=r"frontend is placed on beta, delta.*\[advertise\] frontend"):
        _plan(hosts=hosts)
    plan = _plan(hosts=hosts, advertise={"frontend": "api.example:443"})
    assert plan.endpoint_address("frontend") == ("api.example", 443)
    delta = tomllib.loads(plan.host_config("delta", ("frontend", "execution")))["endpoints"]["frontend"]
    assert delta == {"host": "api.example", "port": 443, "listen": "10.0.0.4:7777"}


@pytest.mark.parametrize("address", ["10.0.0.1/24", "host name", "../x"])
def test_a_host_address_must_be_a_name_or_an_ip(address: str) -> None:
    hosts = {**THREE_HOSTS["hosts"], "gamma": {"address": address, "services": ["execution"]}}
    with pytest.raises(ConfigurationError, match="must be a DNS name or an IP address"):
        _plan(hosts=hosts)


def test_options_spell_the_same_plan() -> None:
    plan = DeploymentPlan.from_options(
        [
            "alpha=10.0.0.1:attestation,storage,management,access_control",
            "beta=[fd00::2]:authentication,frontend,scheduler,execution",
        ]
    )
    assert plan.hosts["beta"].address == "[fd00::2]"
    assert plan.endpoint_address("frontend") == ("[fd00::2]", 7777)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("deployment") / "d"
    init_deployment(directory, _plan())
    return directory


def test_init_keeps_secrets_private_and_refuses_to_overwrite(deployment: Path) -> None:
    for path in [deployment, *deployment.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name.endswith(".key"):
            assert mode == 0o600, path
    with pytest.raises(ConfigurationError, match="already holds a deployment"):
        init_deployment(deployment, _plan())


def _names(deployment: Path, host: str, services: tuple[str, ...] | None = None) -> dict[str, bool]:
    return {str(f.path): f.secret for f in bundle_files(deployment, host, services)}


def test_a_bundle_holds_the_private_keys_of_its_hosts_services_only(deployment: Path) -> None:
    public = {
        "cloister.toml",
        "attestation/as_root_ca.pem",
        "attestation/deployment_ca.pem",
        "attestation/platform_signing.pub.pem",
        "attestation/enclave_info.toml",
        "attestation/auditors/dev.public.pem",
        "attestation/auditors/dev.sign.sha256",
    }
    alpha = _names(deployment, "alpha")
    assert {n for n, secret in alpha.items() if secret} == {
        "attestation/as_root_ca.key",
        "attestation/report_signer.key",
        "attestation/deployment_ca.key",
        "attestation/sim_quoting.key",
        "storage/storage.key",
    }
    for host in ("beta", "gamma"):
        names = _names(deployment, host)
        assert set(names) == public | {"attestation/sim_quoting.key"}
    only_storage = _names(deployment, "alpha", ("storage",))
    assert "attestation/as_root_ca.key" not in only_storage and "storage/storage.key" in only_storage
    with pytest.raises(ConfigurationError, match="does not place storage on gamma"):
        bundle_files(deployment, "gamma", ("storage",))
    with pytest.raises(ConfigurationError, match="no host 'omega'"):
        bundle_files(deployment, "omega")


def test_a_directory_bundle_unpacks_into_a_private_state_directory(deployment: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_bundle(bundle_files(deployment, "gamma", state_dir=state), tmp_path / "gamma")
    assert unpack_bundle(tmp_path / "gamma") == state
    settings = load_settings(state / "cloister.toml", {})
    assert settings.state_dir == state
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "attestation" / "sim_quoting.key").stat().st_mode) == 0o600
    with pytest.raises(ConfigurationError, match="use --force"):
        unpack_bundle(tmp_path / "gamma")
    unpack_bundle(tmp_path / "gamma", force=True)


def test_unpack_never_follows_a_link(deployment: Path, tmp_path: Path) -> None:
    write_bundle(bundle_files(deployment, "gamma"), tmp_path / "bundle")
    os.symlink("/etc/passwd", tmp_path / "bundle" / "attestation" / "extra")
    with pytest.raises(ConfigurationError, match="neither a file nor a directory"):
        unpack_bundle(tmp_path / "bundle", tmp_path / "target")
    (tmp_path / "bundle" / "attestation" / "extra").unlink()
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "target" / "attestation")
    with pytest.raises(ConfigurationError, match="not a directory"):
        unpack_bundle(tmp_path / "bundle", tmp_path / "target")
    assert not (tmp_path / "elsewhere").exists()


def test_signing_again_keeps_the_keys_and_lists_the_code_installed_here(deployment: Path, tmp_path: Path) -> None:
    attestation = deployment / "attestation"
    root_key = (attestation / "as_root_ca.key").read_bytes()
    info = attestation / "enclave_info.toml"
    expected = info.read_bytes()
    info.write_text('[teaclave_storage_service]\nmr_enclave = "00"\nmr_signer = "00"\n')  # an older release's
    with pytest.raises(AttestationError):
        Deployment(attestation).verified_enclave_info()
    sign_identities(deployment)
    assert (attestation / "as_root_ca.key").read_bytes() == root_key
    assert info.read_bytes() == expected
    Deployment(attestation).verified_enclave_info()
    with pytest.raises(ConfigurationError, match="holds no deployment"):
        sign_identities(tmp_path)


def test_unpack_writes_only_what_a_bundle_holds(deployment: Path, tmp_path: Path) -> None:
    write_bundle(bundle_files(deployment, "gamma"), tmp_path / "bundle")
    (tmp_path / "bundle" / "cron.d").mkdir()
    (tmp_path / "bundle" / "cron.d" / "job").write_text("* * * * * root sh -c 'id'\n")
    with pytest.raises(ConfigurationError, match=r"'cron\.d/job' is not something a bundle holds"):
        unpack_bundle(tmp_path / "bundle", tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_host_settings_cannot_override_what_the_plan_decides() -> None:
    hosts = {**THREE_HOSTS["hosts"], "gamma": {**THREE_HOSTS["hosts"]["gamma"], "settings": {"endpoints": {}}}}
    with pytest.raises(ConfigurationError, match="endpoints comes from the plan itself"):
        _plan(hosts=hosts)


def test_replicas_that_would_split_their_state_are_refused() -> None:
    hosts = {**THREE_HOSTS["hosts"], "delta": {"address": "10.0.0.4", "services": ["authentication"]}}
    with pytest.raises(ConfigurationError, match="user database and token key live on its host"):
        _plan(hosts=hosts, advertise={"authentication_api": "a.example:7776", "authentication_internal": "a.example:1"})
    hosts = {**THREE_HOSTS["hosts"], "delta": {"address": "10.0.0.4", "services": ["storage"]}}
    with pytest.raises(ConfigurationError, match="on alpha it keeps its own SQLite database"):
        _plan(hosts=hosts, advertise={"storage": "storage.example:17778"})
    postgres = {"storage": {"backend": "postgres", "dsn": "postgresql://cloister@db.example/cloister"}}
    hosts = {
        **THREE_HOSTS["hosts"],
        "alpha": {**THREE_HOSTS["hosts"]["alpha"], "settings": postgres},
        "delta": {"address": "10.0.0.4", "services": ["storage"], "settings": postgres},
    }
    plan = _plan(hosts=hosts, advertise={"storage": "storage.example:17778"})
    assert plan.endpoint_address("storage") == ("storage.example", 17778)


class _Zeros(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def _archive(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """A .tar.gz of (name, tar type, size) members, each of zeros."""
    with (
        gzip.open(path, "wb", compresslevel=1) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.GNU_FORMAT) as archive,
    ):
        for name, kind, size in members:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, size
            archive.addfile(info, io.BufferedReader(_Zeros()) if size else None)
    return path


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("cloister.toml", tarfile.REGTYPE, 64 << 20)], "larger than a bundle can be"),
        ([(f"storage/{i}", tarfile.REGTYPE, 0) for i in range(300)], "more than 256 entries"),
        # An extended header is read whole into memory by tarfile: the decompressed stream stops it.
        ([("pax", tarfile.XHDTYPE, 64 << 20), ("cloister.toml", tarfile.REGTYPE, 1)], "larger than a bundle can be"),
    ],
    ids=["a huge file", "many entries", "a huge extended header"],
)
def test_an_archive_that_expands_beyond_a_bundle_is_refused_before_it_is_all_read(
    tmp_path: Path, members: list[tuple[str, bytes, int]], message: str
) -> None:
    bundle = _archive(tmp_path / "bomb.tar.gz", members)
    assert bundle.stat().st_size < 1 << 20  # small on disk, large once decompressed
    with pytest.raises(ConfigurationError, match=message):
        unpack_bundle(bundle, tmp_path / "target")
    assert not (tmp_path / "target").exists()
