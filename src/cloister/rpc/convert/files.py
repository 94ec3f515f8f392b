"""File requests and responses ↔ :mod:`cloister.model.files` (reference §7.1, §7.2)."""

from __future__ import annotations

import uuid

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.errors import InvalidArgumentError
from cloister.file_agent.schemes import check_url
from cloister.model.files import CRYPTO_SCHEMAS, FileCrypto, InputFile, OutputFile, parse_cmac

MISSING_CRYPTO_INFO = f"crypto_info is missing; give one with a schema, one of: {', '.join(CRYPTO_SCHEMAS)}"
"""The reference answered INTERNAL ``"missing crypto_info"``, quotes included (§1.3)."""


def crypto_from_proto(info: common_pb.FileCryptoInfo | None) -> FileCrypto:
    """Validate a ``FileCryptoInfo``; ``None`` stands for an unset field."""
    if info is None:
        raise InvalidArgumentError(MISSING_CRYPTO_INFO)
    return FileCrypto.from_request(info.schema, info.key, info.iv)


def _crypto_field(
    request: fe_pb.RegisterInputFileRequest | fe_pb.RegisterOutputFileRequest,
) -> common_pb.FileCryptoInfo | None:
    return request.crypto_info if request.HasField("crypto_info") else None


def input_file_from_register_request(
    request: fe_pb.RegisterInputFileRequest, owner: str, file_uuid: uuid.UUID
) -> InputFile:
    """Checked in the reference's order: url, cmac, crypto info."""
    url = check_url(request.url, output=False)
    cmac = parse_cmac(request.cmac)
    crypto = crypto_from_proto(_crypto_field(request))
    return InputFile(url=url, cmac=cmac, crypto=crypto, owner=frozenset({owner}), uuid=file_uuid)


def output_file_from_register_request(
    request: fe_pb.RegisterOutputFileRequest, owner: str, file_uuid: uuid.UUID
) -> OutputFile:
    url = check_url(request.url, output=True)
    crypto = crypto_from_proto(_crypto_field(request))
    return OutputFile(url=url, cmac=None, crypto=crypto, owner=frozenset({owner}), uuid=file_uuid)


def input_file_to_get_response(file: InputFile) -> fe_pb.GetInputFileResponse:
    return fe_pb.GetInputFileResponse(owner=sorted(file.owner), cmac=file.cmac)


def output_file_to_get_response(file: OutputFile) -> fe_pb.GetOutputFileResponse:
    """An output no task has written yet answers an empty cmac."""
    return fe_pb.GetOutputFileResponse(owner=sorted(file.owner), cmac=file.cmac or b"")
