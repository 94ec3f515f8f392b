"""Attestation (layer 2): TEE evidence, endorsed reports, attested certificates, identities.

A backend measures the running service and binds its certificate key into evidence; an
endorser turns evidence into Teaclave's IAS-v4-style report; the report rides in the first
extension of the service's certificate, where peers and Teaclave's own SDK verify it against
the attestation root CA and the auditor-signed ``enclave_info.toml``.

``producers`` obtains real evidence on TDX, SEV-SNP, SGX (Gramine) and Nitro, and ``hardware``
verifies such evidence offline into one ``Claims`` shape judged by a ``TeePolicy``; the
attestation service endorses hardware evidence that policy accepts, and ``sim`` evidence only in
a simulated deployment, where everything ``sim`` produces says that its hardware root is simulated.
"""
