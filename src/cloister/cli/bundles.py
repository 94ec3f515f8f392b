"""The deployment directory ``cloister deploy init`` creates once, and the bundle each host joins with.

The deployment directory holds every secret of the deployment (the attestation root CA's key,
the auditor's key, the storage sealing key) and never leaves the operator's machine; a bundle
holds the public trust material, the one host's settings and the private keys of the services
that host runs, nothing more. Bundles are unpacked with :func:`unpack_bundle`, which writes
regular files only, and only the places a bundle holds.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cloister.attestation.deployment import Deployment, provision, write_signed_identities
from cloister.attestation.enclave_info import EnclaveIdentity, EnclaveInfo
from cloister.attestation.measurement import enclave_name
from cloister.cli.deployment_plan import ALL_SERVICES, DeploymentPlan, read_plan
from cloister.cli.measurements import MeasuredImage, merged
from cloister.config import ATTESTATION_SERVICE, MEASURED, SERVICES, load_settings
from cloister.crypto.sealing import load_or_create_key
from cloister.errors import CloisterError, ConfigurationError

PLAN_FILE = "hosts.toml"
"""The plan as ``deploy init`` read it, in the deployment directory."""
CONFIG_FILE = "cloister.toml"
"""A host's settings, in its bundle and its state directory."""

_ATTESTATION = "attestation"
_STORAGE_KEY = PurePosixPath("storage/storage.key")
_PUBLIC = ("as_root_ca.pem", "deployment_ca.pem", "platform_signing.pub.pem", "enclave_info.toml")
"""Trust material every host gets: what a service checks its peers and the identity file against."""
_ATTESTATION_SECRETS = ("as_root_ca.key", "report_signer.key", "deployment_ca.key")
_ATTESTATION_PUBLIC = ("report_signer.pem", "sim_quoting.pub.pem")
_SIM_QUOTING_KEY = "sim_quoting.key"
"""The simulated CPU's attestation key: on ``sim`` every host that runs a service needs it, as
every real CPU has its own; with hardware backends it does not exist."""
_BUNDLE_PLACES = (CONFIG_FILE, _ATTESTATION, "storage")
"""What a bundle may write into a state directory, and nothing else."""
_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
_MAX_MEMBERS = 256


def init_deployment(
    directory: Path, plan: DeploymentPlan, force: bool = False, images: list[MeasuredImage] | None = None
) -> None:
    """Create the deployment in ``directory``: trust material, signed identities, every host's settings.

    The identities are the ``sim`` measurements of the code installed here, or, given
    ``images``, the hardware measurements of every service (all of them must be there).

    Raises:
        ConfigurationError: ``directory`` already holds a deployment (and not ``force``), a
            host's settings would not load, or ``images`` leave a service out or are for
            another platform than the plan's.
    """
    ours = (PLAN_FILE, _ATTESTATION, "secrets", "hosts")
    existing = [name for name in ours if (directory / name).exists() or (directory / name).is_symlink()]
    if existing and not force:
        raise ConfigurationError(
            f"{directory} already holds a deployment ({', '.join(existing)}); use --force to replace it "
            "(every host then needs a new bundle)"
        )
    for name in plan.hosts:  # checked before anything is written
        _check_host_config(plan, name)
    identities = None
    if images is not None:
        identities = _hardware_identities(plan, images)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for entry in existing:
        path = directory / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    # On hardware the console, like every service, is known by its image's measurements, never the sim ones.
    deployment = provision(directory / _ATTESTATION, MEASURED if plan.tee_backend == "sim" else SERVICES)
    if identities is not None:
        write_signed_identities(deployment, identities)
    os.chmod(directory / _ATTESTATION / "auditors", 0o700)
    (directory / "secrets").mkdir(mode=0o700)
    load_or_create_key(directory / "secrets" / _STORAGE_KEY.name)
    _write(directory / PLAN_FILE, plan.to_toml().encode(), 0o600)
    (directory / "hosts").mkdir(mode=0o700)
    for host in plan.hosts.values():
        _write(directory / "hosts" / f"{host.name}.toml", plan.host_config(host.name, host.services).encode(), 0o600)


def sign_identities(directory: Path) -> None:
    """Measure the services as installed here and sign a new ``enclave_info.toml``, keeping every key.

    After an upgrade, the services' code (and so their measurements) changed: peers refuse a
    service whose measurement the identity file does not list.

    Raises:
        ConfigurationError: ``directory`` holds no deployment.
    """
    plan = load_plan(directory)
    if plan.tee_backend != "sim":
        raise ConfigurationError(
            f"this deployment runs on {plan.tee_backend}: its identities are the hardware's measurements, "
            f"not the code installed here; record new ones with 'cloister deploy measure {directory}'"
        )
    provision(directory / _ATTESTATION, MEASURED)


def measure_identities(directory: Path, identities: list[EnclaveIdentity]) -> EnclaveInfo:
    """Record hardware ``identities`` in the deployment's ``enclave_info.toml`` and sign it again.

    Identities of the same names are replaced, the others kept; keys and CAs stay. Returns the
    new identity file.

    Raises:
        ConfigurationError: ``directory`` holds no deployment, or the identities are for another
            platform than the plan's.
        AttestationError: the identity file there no longer verifies under its auditors' signatures.
    """
    plan = load_plan(directory)
    for identity in identities:
        if identity.platform != plan.tee_backend:
            raise ConfigurationError(
                f"the deployment's tee_backend is {plan.tee_backend}, but these measurements are {identity.platform}"
            )
    deployment = Deployment(directory / _ATTESTATION)
    current, _ = deployment.verified_enclave_info()  # never carry a changed file forward under a new signature
    write_signed_identities(deployment, merged(current.identities(), identities))
    return deployment.enclave_info()


def _hardware_identities(plan: DeploymentPlan, images: list[MeasuredImage]) -> list[EnclaveIdentity]:
    for image in images:
        if image.platform != plan.tee_backend:
            raise ConfigurationError(
                f"the deployment's tee_backend is {plan.tee_backend}, but the measurements are {image.platform}"
            )
    by_service = {identity.name: identity for image in images for identity in image.identities()}
    missing = [s for s in SERVICES if enclave_name(s) not in by_service]
    if missing:
        raise ConfigurationError(
            f"the measurements leave out {', '.join(missing)}: on {plan.tee_backend} every service needs its "
            "image's measurements"
        )
    return [by_service[enclave_name(s)] for s in MEASURED if enclave_name(s) in by_service]  # the console's is optional


def _check_host_config(plan: DeploymentPlan, name: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(plan.host_config(name, plan.hosts[name].services))
        f.flush()
        try:
            load_settings(Path(f.name), {})
        except CloisterError as exc:
            raise ConfigurationError(f"host {name}'s settings would not load: {exc.message}") from None


def load_plan(directory: Path) -> DeploymentPlan:
    path = directory / PLAN_FILE
    if not path.exists():
        raise ConfigurationError(f"{directory} holds no deployment: create one with 'cloister deploy init {directory}'")
    return read_plan(path)


# --- deploy bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFile:
    path: PurePosixPath
    """Relative to the host's state directory."""
    data: bytes
    secret: bool


def bundle_files(
    directory: Path, host: str, services: tuple[str, ...] | None = None, state_dir: Path | None = None
) -> list[BundleFile]:
    """What host ``host`` needs to run ``services`` (default: the ones the plan gives it), and nothing more.

    Raises:
        ConfigurationError: the host or a service is not in the plan.
    """
    plan = load_plan(directory)
    if host not in plan.hosts:
        raise ConfigurationError(f"the deployment has no host {host!r}; hosts: {', '.join(plan.hosts)}")
    placed = plan.hosts[host].services
    services = placed if services is None else tuple(dict.fromkeys(services))
    for service in services:
        if service not in ALL_SERVICES:
            raise ConfigurationError(f"{service!r} is not a service; services: {', '.join(ALL_SERVICES)}")
        if service not in placed:
            raise ConfigurationError(
                f"the plan does not place {service} on {host} (it runs {', '.join(placed)}), so no peer would "
                f"dial it there; change {PLAN_FILE} and run 'cloister deploy init --force'"
            )
    attestation = directory / _ATTESTATION
    files = [BundleFile(PurePosixPath(CONFIG_FILE), plan.host_config(host, services, state_dir).encode(), False)]

    def add(name: str, secret: bool) -> None:
        files.append(BundleFile(PurePosixPath(_ATTESTATION, name), (attestation / name).read_bytes(), secret))

    for name in _PUBLIC:
        add(name, False)
    for path in sorted((attestation / "auditors").iterdir()):
        if path.name.endswith((".public.pem", ".sign.sha256")):
            add(f"auditors/{path.name}", False)
    if ATTESTATION_SERVICE in services:
        for name in _ATTESTATION_SECRETS:
            add(name, True)
        for name in _ATTESTATION_PUBLIC:
            add(name, False)
    if plan.tee_backend == "sim" and any(s != ATTESTATION_SERVICE for s in services):
        add(_SIM_QUOTING_KEY, True)
    if "storage" in services:
        files.append(BundleFile(_STORAGE_KEY, (directory / "secrets" / _STORAGE_KEY.name).read_bytes(), True))
    return files


def write_bundle(files: list[BundleFile], output: Path, force: bool = False) -> None:
    """A ``.tar.gz`` (0600) when ``output`` ends so, else a directory (0700) of the files.

    Raises:
        ConfigurationError: ``output`` exists (and not ``force``).
    """
    if (output.exists() or output.is_symlink()) and not force:
        raise ConfigurationError(f"{output} exists; use --force to replace it")
    if output.name.endswith((".tar.gz", ".tgz")):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for directory in sorted({p for f in files for p in f.path.parents if str(p) != "."}):
                info = tarfile.TarInfo(str(directory))
                info.type, info.mode = tarfile.DIRTYPE, 0o700
                archive.addfile(info)
            for file in files:
                info = tarfile.TarInfo(str(file.path))
                info.size, info.mode = len(file.data), 0o600
                archive.addfile(info, io.BytesIO(file.data))
        output.unlink(missing_ok=True)
        _write(output, buffer.getvalue(), 0o600)
        return
    if output.is_symlink() or output.is_file():
        output.unlink()
    elif output.exists():
        shutil.rmtree(output)
    output.mkdir(mode=0o700, parents=True)
    for file in files:
        _write_under(output, file.path, file.data)


# --- deploy unpack ---------------------------------------------------------------------


def unpack_bundle(bundle: Path, target: Path | None = None, force: bool = False) -> Path:
    """Put a bundle's files into ``target`` (default: the state directory its settings name).

    Only regular files and directories whose names stay under ``target`` are accepted: an
    absolute name, ``..``, a link or a device refuses the whole bundle before anything is
    written. Returns the target.

    Raises:
        ConfigurationError: the bundle is unsafe or unreadable, or a file exists (and not ``force``).
    """
    files = _read_bundle(bundle)
    if target is None:
        config = files.get(PurePosixPath(CONFIG_FILE))
        if config is None:
            raise ConfigurationError(f"{bundle} has no {CONFIG_FILE}: not a Cloister bundle")
        try:
            target = Path(tomllib.loads(config.decode())["state_dir"])
        except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{bundle}'s {CONFIG_FILE} names no state_dir ({exc})") from None
        if not target.is_absolute():
            raise ConfigurationError(f"{bundle}'s {CONFIG_FILE} names a relative state_dir; give --state-dir")
    existing = [str(p) for p in files if (target / p).exists()]
    if existing and not force:
        raise ConfigurationError(f"{target} already holds {', '.join(existing[:3])}; use --force to replace them")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    for path, data in files.items():
        _write_under(target, path, data)
    return target


def _read_bundle(bundle: Path) -> dict[PurePosixPath, bytes]:
    files: dict[PurePosixPath, bytes] = {}
    if bundle.is_dir():
        for path in sorted(bundle.rglob("*")):
            relative = PurePosixPath(path.relative_to(bundle).as_posix())
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise ConfigurationError(f"{bundle} holds {relative}, which is neither a file nor a directory")
            if path.is_file():
                files[_safe_name(str(relative), bundle)] = path.read_bytes()
        return files
    try:
        with (
            gzip.open(bundle) as compressed,
            tarfile.open(fileobj=io.BufferedReader(_Capped(compressed)), mode="r|") as archive,
        ):
            total = 0
            for count, member in enumerate(archive, start=1):
                if count > _MAX_MEMBERS:
                    raise ConfigurationError(f"{bundle} holds more than {_MAX_MEMBERS} entries: not a Cloister bundle")
                name = _safe_name(member.name, bundle)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise ConfigurationError(f"{bundle}: {member.name} is a link or a device; refused")
                total += member.size
                if total > _MAX_BUNDLE_BYTES:
                    raise ConfigurationError(f"{bundle} is larger than a bundle can be; refused")
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                files[name] = extracted.read()
    except _TooLargeError:
        raise ConfigurationError(f"{bundle} is larger than a bundle can be; refused") from None
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ConfigurationError(f"{bundle} is not a readable .tar.gz bundle: {exc}") from None
    return files


class _TooLargeError(Exception):
    """The decompressed bundle passed the cap."""


class _Capped(io.RawIOBase):
    """A decompressed stream that stops at what a bundle can hold, so that a small archive that
    expands to gigabytes (a gzip bomb) is refused after reading that much, not after all of it."""

    _LIMIT = _MAX_BUNDLE_BYTES + (_MAX_MEMBERS + 2) * 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE
    """The files, each member's header and padding, and the end-of-archive blocks."""

    def __init__(self, stream: gzip.GzipFile) -> None:
        super().__init__()
        self._stream = stream
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._stream.readinto(buffer)
        self._read += count
        if self._read > self._LIMIT:
            raise _TooLargeError
        return count


def _safe_name(name: str, bundle: Path) -> PurePosixPath:
    """``name`` if it stays under the target and is a place a bundle puts files; else the bundle is refused."""
    path = PurePosixPath(name.rstrip("/"))
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", "") for part in name.rstrip("/").split("/") if part != ".")
        or not path.parts
    ):
        raise ConfigurationError(f"{bundle}: entry {name!r} would land outside the target; refused")
    path = PurePosixPath(*(part for part in path.parts if part != "."))
    if not (path.parts[0] in _BUNDLE_PLACES and (len(path.parts) == 1 or path.parts[0] != CONFIG_FILE)):
        raise ConfigurationError(
            f"{bundle}: entry {name!r} is not something a bundle holds ({', '.join(_BUNDLE_PLACES)}); refused"
        )
    return path


def _write_under(root: Path, relative: PurePosixPath, data: bytes) -> None:
    """Write ``root/relative`` (0600), creating directories (0700), never through a link."""
    directory = root
    for part in relative.parts[:-1]:
        directory = directory / part
        try:
            mode = os.lstat(directory).st_mode
        except FileNotFoundError:
            directory.mkdir(mode=0o700)
            continue
        if not stat.S_ISDIR(mode):
            raise ConfigurationError(f"{directory} is not a directory (a link?); refused")
    path = directory / relative.parts[-1]
    if path.is_symlink():
        raise ConfigurationError(f"{path} is a link; refused")
    _write(path, data, 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
