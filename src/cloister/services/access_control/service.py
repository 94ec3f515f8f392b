"""The access control process: load the policy and serve it."""

from __future__ import annotations

import logging

from cloister._proto import teaclave_access_control_service_pb2_grpc as agrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.access_control.policy import ApiPolicy
from cloister.services.access_control.servicer import AccessControlServicer

logger = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "access_control")
    policy = ApiPolicy(settings.access_control.policy_dir)
    logger.info("access control policy loaded from %s", policy.source)
    servicer = AccessControlServicer(policy)
    await runtime.serve("access_control", [lambda s: agrpc.add_TeaclaveAccessControlServicer_to_server(servicer, s)])
    await runtime.run_until_stopped()
