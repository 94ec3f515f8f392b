"""Files: how a party's file is encrypted (:class:`Crypto`), registering it, and its handle."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from cloister._proto import teaclave_common_pb2 as common_pb
from cloister._proto import teaclave_frontend_service_pb2 as fe_pb
from cloister.model.files import FileCrypto
from cloister.model.views import File
from cloister.rpc.convert.views import file_from_proto
from cloister.sdk._session import UserCaller

_IV_LENGTH = 12


@dataclass(frozen=True)
class Crypto(FileCrypto):
    """A file's schema, key and IV, checked when made; ``repr`` hides the key and IV.

    Make one with :meth:`aes_gcm_128`, :meth:`aes_gcm_256`, :meth:`teaclave_file_128` or :meth:`raw`.
    """

    def __post_init__(self) -> None:
        FileCrypto.from_request(self.schema, self.key, self.iv, field="")  # raises InvalidArgumentError

    @classmethod
    def aes_gcm_128(cls, key: bytes, iv: bytes | None = None) -> Crypto:
        """A 16-byte key; ``iv`` (12 bytes) is random when not given: pass the one an input was encrypted with."""
        return cls("aes-gcm-128", bytes(key), os.urandom(_IV_LENGTH) if iv is None else bytes(iv))

    @classmethod
    def aes_gcm_256(cls, key: bytes, iv: bytes | None = None) -> Crypto:
        """A 32-byte key; ``iv`` as for :meth:`aes_gcm_128`."""
        return cls("aes-gcm-256", bytes(key), os.urandom(_IV_LENGTH) if iv is None else bytes(iv))

    @classmethod
    def teaclave_file_128(cls, key: bytes) -> Crypto:
        """SGX protected files: a 16-byte key, no IV; the file's name is bound into its keys."""
        return cls("teaclave-file-128", bytes(key))

    @classmethod
    def raw(cls) -> Crypto:
        """Not encrypted (inputs only)."""
        return cls("raw")

    def to_proto(self) -> common_pb.FileCryptoInfo:
        return common_pb.FileCryptoInfo(schema=self.schema, key=self.key, iv=self.iv)


class FileHandle:
    """A registered file, by id; registering returns one, and tasks are assigned them."""

    def __init__(self, session: UserCaller, file_id: str) -> None:
        self._session = session
        self.id = file_id

    def __repr__(self) -> str:
        return f"FileHandle({self.id!r})"

    def get(self) -> File:
        """Its owners and, once known, its cmac."""
        if self.id.startswith("input-"):
            response = self._session.frontend("GetInputFile", fe_pb.GetInputFileRequest(data_id=self.id))
        else:
            response = self._session.frontend("GetOutputFile", fe_pb.GetOutputFileRequest(data_id=self.id))
        return file_from_proto(self.id, response)

    def update_url(self, url: str) -> FileHandle:
        """Register the same file at a new URL; returns the new registration's handle."""
        if self.id.startswith("input-"):
            response = self._session.frontend("UpdateInputFile", fe_pb.UpdateInputFileRequest(data_id=self.id, url=url))
        else:
            response = self._session.frontend(
                "UpdateOutputFile", fe_pb.UpdateOutputFileRequest(data_id=self.id, url=url)
            )
        return FileHandle(self._session, response.data_id)


class FilesAPI:
    """``client.files``: register inputs and outputs."""

    def __init__(self, session: UserCaller) -> None:
        self._session = session

    def register_input(self, url: str, crypto: Crypto, cmac: bytes) -> FileHandle:
        """An encrypted file at ``url`` to feed tasks; ``cmac`` is its tag, checked before a function reads it."""
        request = fe_pb.RegisterInputFileRequest(url=url, cmac=bytes(cmac), crypto_info=crypto.to_proto())
        return FileHandle(self._session, self._session.frontend("RegisterInputFile", request).data_id)

    def register_output(self, url: str, crypto: Crypto) -> FileHandle:
        """Where a task writes an output, encrypted under ``crypto``."""
        request = fe_pb.RegisterOutputFileRequest(url=url, crypto_info=crypto.to_proto())
        return FileHandle(self._session, self._session.frontend("RegisterOutputFile", request).data_id)

    def register_fusion_output(self, owners: Iterable[str]) -> FileHandle:
        """An output kept inside the platform for ``owners`` to use as a later task's input."""
        request = fe_pb.RegisterFusionOutputRequest(owner_list=list(owners))
        return FileHandle(self._session, self._session.frontend("RegisterFusionOutput", request).data_id)

    def register_input_from_output(self, output: FileHandle | str) -> FileHandle:
        """A written output as an input of another task."""
        request = fe_pb.RegisterInputFromOutputRequest(data_id=_file_id(output))
        return FileHandle(self._session, self._session.frontend("RegisterInputFromOutput", request).data_id)


def _file_id(file: FileHandle | str) -> str:
    return file if isinstance(file, str) else file.id
