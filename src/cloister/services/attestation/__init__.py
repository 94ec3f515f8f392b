"""Attestation service: checks TEE evidence and endorses it, the part Intel's IAS plays for SGX.

It is the only holder of the report-signing key and the deployment CA's key; services reach
it over TLS verified against the attestation root CA, before they have identities of their own.
"""
