"""The deployment artefacts, checked offline with the tools CI has (no container engine, no
cluster): hadolint lints the Dockerfile, ``kubectl kustomize`` renders deploy/kubernetes and
``kubernetes-validate`` validates every object it renders, and compose.yaml names only real
``cloister`` commands and real settings.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from cloister.cli.health import PROBED
from cloister.cli.main import main
from cloister.config import load_settings
from cloister.executors.sandbox.requirements import CAPABILITIES

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
HOSTS = (
    "attestation",
    "authentication",
    "frontend",
    "management",
    "storage",
    "access-control",
    "scheduler",
    "execution",
)
"""Each service's host name in the plans, compose service and Kubernetes component: as the service, with '-'."""
SERVICE_OF = {host: host.replace("-", "_") for host in HOSTS}


def _tool(name: str) -> str:
    """A tool from the dev extras, installed beside this Python (``make install``)."""
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found is not None, f"{name} is not installed: make install (it is in the dev extras)"
    return found


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120, cwd=cwd, stdin=subprocess.DEVNULL
    )


# --- Dockerfile ---------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile_at_every_level() -> None:
    result = _run(_tool("hadolint"), "--failure-threshold", "style", ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install bubblewrap\n")
    result = _run(_tool("hadolint"), "--failure-threshold", "style", bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # an image without a tag


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """deploy/kubernetes rendered by ``kubectl kustomize``, with stand-in secret files."""
    copy = tmp_path_factory.mktemp("kustomize") / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    for host in HOSTS:
        (copy / "secrets" / f"{host}.tar.gz").write_bytes(b"not a real bundle")
    (copy / "secrets" / "postgres-password").write_text("not a real password\n")
    result = _run(_tool("kubectl"), "kustomize", copy)
    assert result.returncode == 0, result.stderr
    output = copy.parent / "rendered.yaml"
    output.write_text(result.stdout)
    yield output


def _objects(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def test_kustomize_refuses_to_render_without_the_bundles(tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    result = _run(_tool("kubectl"), "kustomize", copy)
    assert result.returncode != 0
    assert "secrets/" in result.stderr


def test_every_rendered_object_is_valid(rendered: Path) -> None:
    result = _run(_tool("kubernetes-validate"), "--strict", rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(_objects(rendered))


def test_the_validator_would_catch_a_misspelt_field(rendered: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(rendered.read_text().replace("readinessProbe:", "readinesProbe:", 1))
    result = _run(_tool("kubernetes-validate"), "--strict", broken)
    assert result.returncode != 0


def test_one_deployment_per_service_each_probed_with_cloister_probe(rendered: Path) -> None:
    objects = _objects(rendered)
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert sorted(deployments) == sorted(f"cloister-{host}" for host in HOSTS)
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert services == {f"cloister-{host}" for host in HOSTS if host != "execution"} | {"cloister-postgres"}
    for host in HOSTS:
        pod = deployments[f"cloister-{host}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        (unpack,) = pod["initContainers"]
        state_dir = container["args"][container["args"].index("--state-dir") + 1]
        _unpacks(["cloister", *unpack["args"]], state_dir)
        _check_command(["cloister", *unpack["args"]])
        assert _check_command(["cloister", *container["args"]])
        assert container["args"][:2] == ["service", SERVICE_OF[host]]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command[:3] == ["cloister", "probe", SERVICE_OF[host]]
            assert _check_command(command)
        assert container["resources"]["requests"] and container["resources"]["limits"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["bundle"]["secret"]["secretName"].startswith(f"cloister-bundle-{host}-")


def test_only_execution_runs_as_root_with_exactly_the_sandbox_capabilities(rendered: Path) -> None:
    for deployment in (o for o in _objects(rendered) if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities["drop"] == ["ALL"]
        if deployment["metadata"]["name"] == "cloister-execution":
            assert pod["runtimeClassName"] == "kata-cc"
            assert pod["securityContext"]["runAsUser"] == 0
            assert sorted(capabilities["add"]) == sorted(name.removeprefix("CAP_") for name in CAPABILITIES)
            assert container["securityContext"]["privileged"] is False
        else:
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            assert "add" not in capabilities
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_config_map_names_real_settings(rendered: Path, tmp_path: Path) -> None:
    (config,) = (o for o in _objects(rendered) if o["kind"] == "ConfigMap")
    _check_settings(config["data"], tmp_path)


# --- compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _invocations(service: dict[str, Any]) -> list[list[str]]:
    """Every ``cloister`` command line a compose service runs: its entrypoint and its healthcheck."""
    entrypoint = service["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and len(entrypoint) == 3
    commands = [shlex.split(part) for part in entrypoint[2].split("&&")]
    commands = [command[1:] if command[0] == "exec" else command for command in commands]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [*commands, test[1:]]


def test_compose_runs_every_service_and_postgres(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*HOSTS, "postgres"}
    assert compose["services"]["postgres"]["image"].startswith("postgres:")
    for host in HOSTS:
        service = compose["services"][host]
        for secret in service["secrets"]:
            assert secret in compose["secrets"]
        assert f"cloister-bundle-{host}" in service["secrets"]
        commands = _invocations(service)
        assert commands[-2][:2] == ["cloister", "service"] and commands[-2][2] == SERVICE_OF[host]
        assert commands[-1][:3] == ["cloister", "probe", SERVICE_OF[host]]
    execution = compose["services"]["execution"]
    assert sorted(execution["cap_add"]) == sorted(name.removeprefix("CAP_") for name in CAPABILITIES)
    assert execution["user"] == "0:0"
    assert all("user" not in compose["services"][host] for host in HOSTS if host != "execution")


def test_compose_commands_are_real_cloister_commands(compose: dict[str, Any]) -> None:
    for host in HOSTS:
        unpack, *rest = _invocations(compose["services"][host])
        _unpacks(unpack, "/var/lib/cloister")
        _check_command(unpack)
        assert all(_check_command(command) for command in rest)


def test_compose_environment_names_real_settings(compose: dict[str, Any], tmp_path: Path) -> None:
    for host in HOSTS:
        _check_settings(compose["services"][host].get("environment", {}), tmp_path)


def test_the_plans_name_each_container(compose: dict[str, Any]) -> None:
    for plan_file, address_of in (
        (ROOT / "deploy" / "compose" / "hosts.toml", lambda host: host),
        (KUBERNETES / "hosts.toml", lambda host: f"cloister-{host}"),
    ):
        plan = tomllib.loads(plan_file.read_text())
        assert set(plan["hosts"]) == set(HOSTS)
        for host, table in plan["hosts"].items():
            assert table == {"address": address_of(host), "services": [SERVICE_OF[host]]}
    assert set(PROBED) == set(SERVICE_OF.values())
    try:
        from cloister.cli.hosts import read_plan  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return  # `cloister deploy` comes with the hosts' branch; then its own parser reads them too
    for plan_file in (ROOT / "deploy" / "compose" / "hosts.toml", KUBERNETES / "hosts.toml"):
        read_plan(plan_file)


# --- helpers ------------------------------------------------------------------------------------


def _check_command(command: list[str]) -> bool:
    """Parse ``command`` as the ``cloister`` CLI would, failing on an unknown command, option or
    value; True once it parsed."""
    assert command[0] == "cloister", command
    group: click.Command = main
    args = command[1:]
    while isinstance(group, click.Group):
        name, args = args[0], args[1:]
        found = group.get_command(click.Context(group), name)
        assert found is not None, f"{shlex.join(command)}: no command {name!r}"
        group = found
    try:
        group.make_context(group.name or "cloister", list(args))
    except click.BadParameter as exc:
        if "does not exist" not in exc.message:  # files of the container (its secrets), not of this host
            raise
    return True


def _unpacks(command: list[str], state_dir: str) -> None:
    """``command`` unpacks a bundle into ``state_dir``."""
    assert command[:3] == ["cloister", "deploy", "unpack"]
    assert command[command.index("--state-dir") + 1] == state_dir


def _check_settings(environment: dict[str, str], tmp_path: Path) -> None:
    """Every ``CLOISTER_`` variable is a setting that loads; a password file is stood in for."""
    env = dict(environment)
    assert all(name.startswith("CLOISTER_") for name in env), env
    if "CLOISTER_STORAGE__DSN_PASSWORD_FILE" in env:
        password = tmp_path / "password"
        password.write_text("stand-in\n")
        env["CLOISTER_STORAGE__DSN_PASSWORD_FILE"] = str(password)
    load_settings(None, env, state_dir=tmp_path / "state")
