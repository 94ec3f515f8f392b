"""The frontend process: the public API on port 7777."""

from __future__ import annotations

import asyncio

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_frontend_service_pb2_grpc as fgrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.frontend.gate import Gate
from cloister.services.frontend.servicer import CloisterFrontendServicer, Forwarder, FrontendServicer
from cloister.services.frontend.tokens import RememberedTokens, follow_changes


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "frontend")
    management = runtime.peer("management")
    authentication = runtime.peer("authentication", "authentication_internal")
    tokens = RememberedTokens()
    following = asyncio.create_task(follow_changes(authentication, tokens), name="user-changes")
    gate = Gate(authentication, runtime.peer("access_control"), tokens)
    audit = runtime.audit_trail()
    audit.start()
    forwarder = Forwarder(gate, management, audit)
    await runtime.serve(
        "frontend",
        [
            lambda s: fgrpc.add_TeaclaveFrontendServicer_to_server(FrontendServicer(forwarder), s),
            lambda s: cgrpc.add_FrontendServicer_to_server(CloisterFrontendServicer(forwarder), s),
        ],
    )

    async def before_shutdown() -> None:
        following.cancel()
        await audit.stop()

    await runtime.run_until_stopped(before_shutdown=before_shutdown)
