"""Getting and keeping an attested identity: evidence → attestation service → certificates.

A service asks the attestation service to endorse evidence about a fresh key, builds its
certificates from the answer, and does it again at two thirds of their lifetime. Servers pick
the new certificate up for new handshakes (``dynamic_ssl_server_credentials``) and clients open
new channels with it, while calls already in flight finish on the connections they started on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import grpc
from cryptography.hazmat.primitives import serialization

from cloister._proto import cloister_pb2 as cpb
from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.attestation.backends import TEEBackend
from cloister.attestation.certificate import TLS_NAME, new_key, report_data_for
from cloister.attestation.deployment import Deployment
from cloister.attestation.identity import ServiceIdentity, build_identity
from cloister.attestation.report import EndorsedReport
from cloister.config import ATTESTATION_SERVICE, Settings
from cloister.errors import CloisterError, ResourceExhaustedError, StatusCode, UnavailableError
from cloister.rpc import addresses
from cloister.rpc.errors import from_rpc_error
from cloister.rpc.retry import Backoff, supervised

logger = logging.getLogger(__name__)

_RETRY_LIMIT = 30.0
_CONNECT_ATTEMPTS = 50


async def obtain_identity(
    settings: Settings, deployment: Deployment, backend: TEEBackend, service: str
) -> ServiceIdentity:
    """A fresh key, endorsed by the attestation service.

    Raises:
        AttestationError: the attestation service refused the evidence.
        UnavailableError: it, or the PCCS or KDS the backend fetches from, could not be reached.
        ResourceExhaustedError: it is busy verifying other evidence.
    """
    key = new_key()
    # In a thread: the TEE may take its time, and a hardware backend may fetch collateral or a VCEK.
    evidence = await asyncio.to_thread(backend.evidence, report_data_for(key.public_key()))
    public_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request = cpb.EndorseRequest(
        tee_backend=evidence.tee_backend,
        quote=evidence.quote,
        evidence_signature=evidence.signature,
        public_key=public_key,
        service=service,
        certificates=evidence.certificates,
        collateral=evidence.collateral,
    )
    address = addresses.resolve(settings, ATTESTATION_SERVICE)
    credentials = grpc.ssl_channel_credentials(root_certificates=deployment.as_root_ca_pem())
    async with grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", TLS_NAME)]
    ) as channel:
        try:
            response = await cgrpc.AttestationStub(channel).Endorse(request, timeout=settings.rpc.call_timeout_seconds)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            if error.status is StatusCode.UNAUTHENTICATED:  # refused: fetch collateral afresh next time
                backend.forget_endorsements()
            raise error from exc
    now = dt.datetime.now(dt.UTC)
    endorsed = EndorsedReport(response.report, response.signature, tuple(response.certs))
    expires = dt.datetime.fromtimestamp(response.expires, dt.UTC)
    return build_identity(
        service, key, endorsed, response.client_certificate, deployment.deployment_ca_pem(), backend.name, now, expires
    )


class IdentityKeeper:
    """This service's current identity, renewed in the background before it expires."""

    def __init__(self, settings: Settings, deployment: Deployment, backend: TEEBackend, service: str) -> None:
        self._settings = settings
        self._deployment = deployment
        self._backend = backend
        self._service = service
        self._identity: ServiceIdentity | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> ServiceIdentity:
        """Obtain the first identity (waiting for the attestation service to come up) and keep it fresh."""
        backoff = Backoff(first=0.05, limit=1.0)
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                self._identity = await obtain_identity(self._settings, self._deployment, self._backend, self._service)
                break
            except (UnavailableError, ResourceExhaustedError) as exc:  # not up yet, busy, or a PCCS/KDS down
                if attempt == _CONNECT_ATTEMPTS - 1:
                    raise
                if attempt % 10 == 9:
                    logger.warning("no identity yet after %d attempts (%s); still trying", attempt + 1, exc.message)
                await backoff.sleep()
        self._task = asyncio.create_task(supervised("certificate renewal", self._renew), name="identity-renewal")
        return self.current()

    @property
    def backend(self) -> TEEBackend:
        """The TEE backend this service's evidence comes from."""
        return self._backend

    def current(self) -> ServiceIdentity:
        if self._identity is None:
            raise RuntimeError("identity not obtained yet: await start() first")
        return self._identity

    async def renew_now(self) -> ServiceIdentity:
        self._identity = await obtain_identity(self._settings, self._deployment, self._backend, self._service)
        logger.info("renewed certificate; valid until %s", self._identity.expires.isoformat())
        return self._identity

    async def _renew(self) -> None:
        backoff = Backoff(first=1.0, limit=_RETRY_LIMIT)
        while True:
            remaining = (self.current().expires - dt.datetime.now(dt.UTC)).total_seconds()
            await asyncio.sleep(max(remaining / 3, 0.5))  # renew at two thirds of the lifetime
            try:
                await self.renew_now()
                backoff.reset()
            except CloisterError as exc:
                delay = backoff.next()
                logger.warning("could not renew the certificate (%s); retrying in %.0f s", exc.message, delay)
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def server_credentials(self, require_client_auth: bool) -> grpc.ServerCredentials:
        """Credentials that present the newest certificate to every new handshake."""
        served = self.current()

        def configuration(identity: ServiceIdentity) -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(identity.private_key_pem, identity.server_certificate_pem)],
                root_certificates=identity.deployment_ca_pem if require_client_auth else None,
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            nonlocal served
            identity = self._identity
            if identity is None or identity is served:
                return None
            served = identity
            return configuration(identity)

        return grpc.dynamic_ssl_server_credentials(configuration(served), fetch, require_client_auth)
