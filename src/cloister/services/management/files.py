"""Input and output files: register, update, fuse, convert and read them (reference §7.1).

File records are never rewritten in place: an update registers a new record under a new id
and leaves the old one as it was, as Teaclave does.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import replace

from cloister.errors import InvalidArgumentError, InvalidDataIdError
from cloister.file_agent.schemes import check_url
from cloister.model.access import Action, Subject, file_query
from cloister.model.files import FileCrypto, InputFile, OutputFile
from cloister.model.ids import parse_id
from cloister.rpc.authorizer import Authorizer, require
from cloister.rpc.convert.limits import check_users
from cloister.storage.client import StorageClient
from cloister.storage.records import load, put

FUSION_URL = "fusion:///TEACLAVE_FUSION_BASE/{}.fusion"
_FUSION_KEY_BYTES = 16


class FileService:
    def __init__(self, storage: StorageClient, authorizer: Authorizer) -> None:
        self._storage = storage
        self._authorizer = authorizer

    async def _require(self, subject: Subject, action: Action, file: InputFile | OutputFile) -> None:
        await require(self._authorizer, subject, file_query(action, file.external_id, file.owner))

    async def _input(self, data_id: str) -> InputFile:
        parsed = parse_id(data_id, "input", InvalidDataIdError)
        return await load(self._storage, parsed, InputFile.from_json, InvalidDataIdError)

    async def _output(self, data_id: str) -> OutputFile:
        parsed = parse_id(data_id, "output", InvalidDataIdError)
        return await load(self._storage, parsed, OutputFile.from_json, InvalidDataIdError)

    async def _store(self, file: InputFile | OutputFile) -> str:
        await self._storage.commit([put(file.external_id.encode(), file)])
        return file.external_id

    async def register(self, subject: Subject, file: InputFile | OutputFile) -> str:
        await self._require(subject, Action.FILE_REGISTER, file)
        return await self._store(file)

    async def update_input(self, subject: Subject, data_id: str, url: str) -> str:
        """A new input file with the new url and the old cmac, crypto and owners; returns its id."""
        old = await self._input(data_id)
        new_url = check_url(url, output=False)
        await self._require(subject, Action.FILE_UPDATE, old)
        return await self._store(replace(old, url=new_url, uuid=uuid.uuid4()))

    async def update_output(self, subject: Subject, data_id: str, url: str) -> str:
        """A new, unwritten output file with the new url and the old crypto and owners."""
        old = await self._output(data_id)
        new_url = check_url(url, output=True)
        await self._require(subject, Action.FILE_UPDATE, old)
        return await self._store(replace(old, url=new_url, cmac=None, uuid=uuid.uuid4()))

    async def register_fusion_output(self, subject: Subject, owner_list: Sequence[str]) -> str:
        """An output shared by several owners, kept by the platform under a key no user sees."""
        owners = check_users(list(owner_list), "owner_list")
        file = OutputFile(
            url=FUSION_URL.format(uuid.uuid4()),
            cmac=None,
            crypto=FileCrypto.fusion(secrets.token_bytes(_FUSION_KEY_BYTES)),
            owner=frozenset(owners),
            uuid=uuid.uuid4(),
        )
        query = file_query(Action.FILE_REGISTER_FUSION, file.external_id, file.owner, owner_entries=len(owners))
        await require(self._authorizer, subject, query)
        return await self._store(file)

    async def register_input_from_output(self, subject: Subject, data_id: str) -> str:
        """Make a written output usable as an input: ``input-<the output's uuid>``."""
        output = await self._output(data_id)
        await self._require(subject, Action.FILE_DERIVE, output)
        if output.cmac is None:
            raise InvalidArgumentError("invalid output file")
        file = InputFile(url=output.url, cmac=output.cmac, crypto=output.crypto, owner=output.owner, uuid=output.uuid)
        return await self._store(file)

    async def get_input(self, subject: Subject, data_id: str) -> InputFile:
        file = await self._input(data_id)
        await self._require(subject, Action.FILE_READ, file)
        return file

    async def get_output(self, subject: Subject, data_id: str) -> OutputFile:
        file = await self._output(data_id)
        await self._require(subject, Action.FILE_READ, file)
        return file
