"""Before a task runs, check it against its approved manifest and get evidence for it; after, sign its receipt.

The manifest comes from storage through the scheduler, like the staged task, so this service
does not take either's word: it recomputes the terms from what it is about to run (function id,
name, executor, payload, arguments, inputs' cmacs and files, outputs' files) and refuses the task
unless they equal the manifest's and every participant approved exactly those terms. The
manifest must be in its one canonical encoding, so the hash the evidence and the receipt bind is
the hash of the very bytes participants are served next to the receipt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloister.attestation.backends import Evidence, TEEBackend
from cloister.attestation.identity import ServiceIdentity
from cloister.attestation.receipts import sign_receipt, task_report_data
from cloister.model.manifest import ManifestMismatchError, TaskManifest, check_manifest, run_view_of_staged
from cloister.model.tasks import StagedTask, TaskResult

REFUSED_PREFIX = "Runtime Error: the task does not match what its participants approved"


class TaskRefusedError(Exception):
    """The task must not run; ``reason`` is its failure reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class AttestedRun:
    """One task's manifest, the key and certificate that will sign its receipt, and its evidence."""

    manifest: TaskManifest
    key: ec.EllipticCurvePrivateKey
    certificate_der: bytes
    evidence: Evidence


class TaskAttestor:
    def __init__(self, backend: TEEBackend, identity: Callable[[], ServiceIdentity]) -> None:
        self._backend = backend
        self._identity = identity

    def begin(self, task: StagedTask) -> AttestedRun:
        """Check the task against its manifest and get evidence binding the manifest and receipt key.

        Raises:
            TaskRefusedError: it carries no manifest, or what would run differs from it.
        """
        if task.manifest is None:
            raise TaskRefusedError(f"{REFUSED_PREFIX}: it carries no approved manifest; it was not run")
        try:
            manifest = TaskManifest.from_bytes(task.manifest)
            if manifest.to_bytes() != task.manifest:
                # The receipt binds the hash of these exact bytes, which participants get to check it.
                raise ManifestMismatchError("its manifest is not in the canonical encoding")
            check_manifest(manifest, run_view_of_staged(task))
        except ManifestMismatchError as exc:
            raise TaskRefusedError(f"{REFUSED_PREFIX}: {exc}; it was not run") from None
        except (ValueError, TypeError, RecursionError):  # values no approved task can hold (NaN, deep nesting)
            raise TaskRefusedError(f"{REFUSED_PREFIX}: its manifest cannot be encoded; it was not run") from None
        identity = self._identity()  # one key for the evidence and the receipt, even across a renewal
        key = serialization.load_pem_private_key(identity.private_key_pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        certificate_der = x509.load_pem_x509_certificate(identity.server_certificate_pem).public_bytes(
            serialization.Encoding.DER
        )
        evidence = self._backend.evidence(task_report_data(manifest.manifest_hash, key.public_key()))
        return AttestedRun(manifest, key, certificate_der, evidence)

    def receipt(self, run: AttestedRun, result: TaskResult, inputs: dict[str, bytes]) -> str:
        """The signed receipt of a task that ended with ``result``."""
        outputs = dict(result.outputs.tags_map) if result.outputs is not None else {}
        return sign_receipt(
            key=run.key,
            certificate_der=run.certificate_der,
            manifest=run.manifest,
            status="Finished" if result.failure is None else "Failed",
            inputs=inputs,
            outputs=outputs,
            evidence=run.evidence,
            simulated=self._backend.simulated,
            issued_at=int(time.time()),
        )
