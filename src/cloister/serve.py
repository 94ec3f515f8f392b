"""``python -m cloister.serve NAME``: one service in this process, as the launcher starts it and as
``cloister service NAME`` runs it.

A service restarted after a crash starts on a machine busy with the others' load, where every
tenth of a CPU second it spends starting is most of a second of waiting. So this module imports
nothing of the command line (click, rich and the other commands are a third of a start) and
parses its few options with :mod:`argparse`; and the launcher keeps one *standby* process ready,
``python -m cloister.serve --standby --state-dir DIR --launcher-pid PID``, which has imported what
every service imports and waits for one line on its standard input, ``{"argv": [...], "env":
{...}}``, to become the service those arguments name. A restart then pays only for what is the
service's own: under load, well under a second instead of two to four.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

import setproctitle

from cloister import logs
from cloister.config import ATTESTATION_SERVICE, CONSOLE, SERVICES, Settings, load_settings
from cloister.errors import CloisterError
from cloister.rpc import tracing

__all__ = ["STANDBY", "await_role", "load_service_settings", "main", "run_service", "stop_with_launcher"]

STANDBY = "--standby"
SHARED_MODULES = ("cloister.rpc.runtime", "cloister.rpc.channel", "cloister.rpc.convert")
"""What every service imports (and with them grpc, cryptography, the protos, attestation)."""

_PR_SET_PDEATHSIG = 1


def stop_with_launcher(launcher_pid: int) -> None:
    """Have this service process stopped when its launcher dies, even by kill -9.

    Run by the service itself at start, not between fork and exec (``preexec_fn``): Python code
    there is unsafe while the launcher has other threads, and crashed restarts.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != launcher_pid:  # it died before the request took effect
        sys.exit(1)


def load_service_settings(
    state_dir: Path | None, config_path: Path | None, instance: str | None = None, admin_password: str | None = None
) -> Settings:
    """The settings from ``config_path`` and the environment, with this process's instance and admin password.

    Raises:
        CloisterError: the settings are invalid.
    """
    env = dict(os.environ)
    if instance:
        env["CLOISTER_INSTANCE"] = instance
    if admin_password:
        env["CLOISTER_ADMIN_PASSWORD"] = admin_password
    return load_settings(config_path, env, state_dir=state_dir)


def run_service(
    name: str,
    *,
    state_dir: Path | None,
    config_path: Path | None,
    log_file: Path | None,
    instance: str | None,
    admin_password_stdin: bool,
    launcher_pid: int | None,
) -> None:
    """Run service ``name`` until it is asked to stop; exit with status 1 if it cannot run.

    Raises:
        CloisterError: the settings are invalid (before anything is logged).
    """
    if launcher_pid is not None:
        stop_with_launcher(launcher_pid)
    # A secret in the environment outlives its use and reaches every child: take it out.
    from_environment = os.environ.pop("CLOISTER_ADMIN_PASSWORD", None)
    password = sys.stdin.readline().rstrip("\r\n") if admin_password_stdin else from_environment
    settings = load_service_settings(state_dir, config_path, instance, password)
    logs.configure(name, settings.logging.level, log_file, settings.logging)
    module_name = "cloister.console.service" if name == CONSOLE else f"cloister.services.{name}.service"
    module = importlib.import_module(module_name)
    try:
        tracing.configure(settings.tracing, name)
        asyncio.run(module.serve(settings))
    except CloisterError as exc:
        # Logged, not printed, so the reason is in the log file the launcher points to.
        logging.getLogger(f"cloister.services.{name}").critical("cannot run: %s", exc.message)
        sys.exit(1)
    finally:
        tracing.shutdown()


def await_role(argv: list[str]) -> list[str]:
    """Wait, imports done, for the launcher to say which service to be; its arguments and environment."""
    parser = argparse.ArgumentParser(prog=f"python -m cloister.serve {STANDBY}")
    parser.add_argument("--state-dir", type=Path, required=True)  # in the command line, for whoever reads ps
    parser.add_argument("--launcher-pid", type=int, required=True)
    arguments = parser.parse_args(argv)
    stop_with_launcher(arguments.launcher_pid)
    for module in SHARED_MODULES:
        importlib.import_module(module)
    line = sys.stdin.readline()
    if not line:  # the launcher stopped without needing it
        sys.exit(0)
    role = json.loads(line)
    os.environ.update(role["env"])
    argv = [str(argument) for argument in role["argv"]]
    # What ps shows: the command an ordinary start of this service would have had.
    setproctitle.setproctitle(shlex.join([sys.executable, "-m", "cloister.serve", *argv]))
    return argv


def main(argv: list[str]) -> None:
    if argv[:1] == [STANDBY]:
        argv = await_role(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m cloister.serve", description="Run one Cloister service.")
    parser.add_argument("name", choices=(ATTESTATION_SERVICE, *SERVICES, CONSOLE))
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--config", dest="config_path", type=Path, default=None)
    parser.add_argument("--log-file", type=Path, default=None)
    parser.add_argument("--instance", default=None)
    parser.add_argument("--admin-password-stdin", action="store_true")
    parser.add_argument("--launcher-pid", type=int, default=None)
    arguments = parser.parse_args(argv)
    try:
        run_service(**vars(arguments))
    except CloisterError as exc:  # the settings: nothing is logged yet
        print(f"Error: {exc.message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
