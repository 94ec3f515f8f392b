"""The attestation service process: TLS under the attestation root CA, one Endorse RPC."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloister._proto import cloister_pb2_grpc as cgrpc
from cloister.attestation.certificate import TLS_NAME, new_key
from cloister.attestation.deployment import Deployment, issue_certificate
from cloister.attestation.hardware.tee_policy import TeePolicy
from cloister.config import ATTESTATION_SERVICE, Settings
from cloister.rpc import addresses
from cloister.rpc.runtime import deployment_of, wait_for_stop_signal
from cloister.rpc.server import start_server
from cloister.services.attestation.admission import EndorsementQueue
from cloister.services.attestation.endorser import Endorser
from cloister.services.attestation.servicer import AttestationServicer

logger = logging.getLogger(__name__)

_TLS_LIFETIME = dt.timedelta(days=30)


def tls_credentials(deployment: Deployment) -> grpc.ServerCredentials:
    """A server certificate issued by the attestation root CA, which every client already trusts."""
    key = new_key()
    certificate = issue_certificate(
        "Cloister Attestation Service",
        key.public_key(),
        deployment.as_root_ca(),
        deployment.as_root_ca_key(),
        dt.datetime.now(dt.UTC),
        _TLS_LIFETIME,
        extensions=(
            x509.SubjectAlternativeName([x509.DNSName(TLS_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ),
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return grpc.ssl_server_credentials([(key_pem, certificate.public_bytes(serialization.Encoding.PEM))])


async def serve(settings: Settings) -> None:
    deployment = deployment_of(settings)
    lifetime = dt.timedelta(seconds=settings.attestation.certificate_lifetime_seconds)
    endorser = Endorser(deployment, lifetime, TeePolicy.from_settings(settings.tee_policy), settings.tee_backend)
    endorsements = EndorsementQueue(
        endorser, settings.attestation.verification_threads, settings.attestation.verification_queue
    )
    configured = settings.endpoint(ATTESTATION_SERVICE)
    server, port = await start_server(
        ATTESTATION_SERVICE,
        configured.bind_address,
        tls_credentials(deployment),
        None,
        settings.rpc,
        [lambda s: cgrpc.add_AttestationServicer_to_server(AttestationServicer(endorsements), s)],
    )
    addresses.publish(settings, ATTESTATION_SERVICE, port)
    logger.info("attestation service listening on %s:%d", configured.bind_host, port)
    try:
        await wait_for_stop_signal(settings, ATTESTATION_SERVICE, asyncio.Event())
    finally:
        addresses.unpublish(settings, ATTESTATION_SERVICE)
        await server.stop(grace=2.0)
        endorsements.close()
