"""The frontend process: the public API on port 7777."""

from __future__ import annotations

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_frontend_service_pb2_grpc as fgrpc
from cloister.config import Settings
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.frontend.gate import Gate
from cloister.services.frontend.servicer import CloisterFrontendServicer, Forwarder, FrontendServicer


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "frontend")
    management = runtime.peer("management")
    gate = Gate(runtime.peer("authentication", "authentication_internal"), runtime.peer("access_control"))
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
    await runtime.run_until_stopped(before_shutdown=audit.stop)
