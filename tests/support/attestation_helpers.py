"""Identities for unit tests, endorsed in process by the same code the attestation service runs."""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization

from cloister.attestation.certificate import new_key, report_data_for
from cloister.attestation.deployment import Deployment
from cloister.attestation.identity import ServiceIdentity, build_identity, open_backend
from cloister.services.attestation.endorser import Endorser


def make_identity(
    deployment: Deployment, service: str, lifetime: dt.timedelta = dt.timedelta(hours=1)
) -> ServiceIdentity:
    now = dt.datetime.now(dt.UTC)
    key = new_key()
    evidence = open_backend("sim", deployment, service).evidence(report_data_for(key.public_key()))
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    endorsement = Endorser(deployment, lifetime).endorse(evidence, public, service, now)
    client_der = endorsement.client_certificate.public_bytes(serialization.Encoding.DER)
    return build_identity(
        service, key, endorsement.report, client_der, deployment.deployment_ca_pem(), "sim", now, endorsement.expires
    )
