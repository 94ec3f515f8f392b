"""The access control process: load the policy, serve it, and ship its decisions to the audit log."""

from __future__ import annotations

import logging

import grpc

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.access_control.policy import AccessPolicy
from cloister.services.access_control.servicer import AccessControlServicer

logger = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "access_control")
    policy = AccessPolicy(settings.access_control.policy_dir)
    logger.info("access control policy loaded from %s", policy.source)
    trail = runtime.audit_trail()
    trail.start()

    servicer = AccessControlServicer(policy, trail)

    def register(server: grpc.aio.Server) -> None:
        agrpc.add_TeaclaveAccessControlServicer_to_server(servicer, server)
        cgrpc.add_AccessControlServicer_to_server(servicer, server)

    await runtime.serve("access_control", [register])
    await runtime.run_until_stopped(before_shutdown=trail.stop)
