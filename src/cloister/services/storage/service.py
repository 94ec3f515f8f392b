"""The storage process: open the sealed database (the configured engine) and serve it."""

from __future__ import annotations

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister._proto import teaclave_storage_service_pb2_grpc as sgrpc
from cloister.config import Settings
from cloister.crypto.sealing import Sealer, load_or_create_key
from cloister.rpc.runtime import ServiceRuntime
from cloister.services.storage.servicer import StorageServicer, TeaclaveStorageServicer
from cloister.storage.engine import open_storage


async def serve(settings: Settings) -> None:
    runtime = await ServiceRuntime.start(settings, "storage")
    key = load_or_create_key(settings.storage_key_path)
    store = open_storage(settings, Sealer(key))
    await store.start()
    try:
        await runtime.serve(
            "storage",
            [
                lambda s: sgrpc.add_TeaclaveStorageServicer_to_server(TeaclaveStorageServicer(store), s),
                lambda s: cgrpc.add_StorageServicer_to_server(StorageServicer(store), s),
            ],
        )
        await runtime.run_until_stopped()
    finally:
        await store.close()
