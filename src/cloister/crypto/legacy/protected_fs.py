"""``teaclave-file-128``: the SGX Protected-FS layout (reference §7.4), written and read as a stream.

A file is 4096-byte nodes: metadata (physical 0, holding the first 3072 plaintext bytes), then for each
Merkle-tree (MHT) node ``m`` its node at ``1 + 97*m`` followed by up to 96 data nodes. Every node is
AES-128-GCM under its own random key with an all-zero nonce; keys and tags live in the parent node.

Speed, measured with ``benchmarks/crypto_throughput.py``: every node has its own key, so ``AESGCM(key)`` plus
one ``*_into`` call (~1.6 us per node, holding the GIL) is the floor. Tried and dropped: a ``Cipher`` decryptor
per node (2x slower), copying each node beside its tag (~10%), one 97-node group per write-behind hand-over
(GIL hand-overs ate the overlap). Kept: nodes 4112 bytes apart with their tags beside them, vectored positional
I/O, keys and tags moved to and from MHT nodes in 32 strided slice copies, 8 groups per batch, writes on a thread.
"""

from __future__ import annotations

import hmac
import io
import os
import struct
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from cloister.crypto.legacy import Progress
from cloister.errors import FileIntegrityError, FileNameMismatchError

NODE = 4096
HEAD = 3072  # plaintext bytes kept inside the metadata node
DATA_PER_MHT = 96
CHILDREN_PER_MHT = 32
MAX_NAME = 259
FILE_ID = 0x5347585F46494C45
_GROUP = DATA_PER_MHT + 1
_TAG = 16
_SLOT = NODE + _TAG  # a node's ciphertext followed by its tag, as AESGCM wants them
_BATCH = 8  # MHT groups per read, write and hand-over to the writer thread (97 * 8 iovecs < IOV_MAX)
_NONCE = bytes(12)
_HEADER = struct.pack("<QBBBBHH", FILE_ID, 1, 0, 1, 0, 0, 0)  # id, major, minor, user key, update flag, policy, svn
_PART = slice(96, 96 + 3372)  # encrypted metadata part
_LABEL = b"SGX-PROTECTED-FS-METADATA-KEY".ljust(64, b"\0")


def data_node_position(d: int) -> int:
    """Physical node number of data node ``d``."""
    return d + 2 + d // DATA_PER_MHT


def mht_node_position(m: int) -> int:
    return 1 + _GROUP * m


def _child_entry(m: int) -> tuple[int, int]:
    """Parent MHT number and byte offset of MHT node ``m``'s key/tag entry (``m >= 1``)."""
    return (m - 1) // CHILDREN_PER_MHT, DATA_PER_MHT * 32 + ((m - 1) % CHILDREN_PER_MHT) * 32


def metadata_key(user_key: bytes, key_id: bytes) -> bytes:
    kdf_input = struct.pack("<I64s4xQ32sI4x", 1, _LABEL, 0, key_id, 0x80)
    cmac = CMAC(algorithms.AES(user_key))
    cmac.update(kdf_input)
    return cmac.finalize()


def check_name(name: str) -> bytes:
    """``name`` as stored in the metadata; raises ``ValueError`` unless it is a usable basename."""
    encoded = name.encode()
    if not encoded or len(encoded) > MAX_NAME or b"\0" in encoded or b"/" in encoded:
        raise ValueError("a protected file's name must be a basename of 1 to 259 bytes")
    return encoded


def _read_full(source: BinaryIO, view: memoryview) -> int:
    filled = 0
    while filled < len(view) and (n := source.readinto(view[filled:])):
        filled += n
    return filled


def _fileno(stream: BinaryIO) -> int | None:
    """The stream's descriptor for vectored positional I/O, or ``None`` to fall back to seek/read/write."""
    if not hasattr(os, "preadv"):
        return None
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _remaining(views: list[memoryview], done: int) -> list[memoryview]:
    """``views`` without their first ``done`` bytes."""
    for i, view in enumerate(views):
        if done < len(view):
            return [view[done:], *views[i + 1 :]]
        done -= len(view)
    return []


def _read_nodes(source: BinaryIO, views: list[memoryview], offset: int) -> int:
    """Fill ``views`` from ``offset`` on (one ``preadv`` when ``source`` is a file); returns the bytes read."""
    fd = _fileno(source)
    total = 0
    if fd is None:
        source.seek(offset)
        return sum(_read_full(source, view) for view in views)
    while views and (n := os.preadv(fd, views, offset + total)):
        total += n
        views = _remaining(views, n)
    return total


def _write_nodes(destination: BinaryIO, views: list[memoryview], offset: int) -> None:
    fd = _fileno(destination)
    if fd is None:
        destination.seek(offset)
        for view in views:
            destination.write(view)
        return
    done = 0
    while views:
        n = os.pwritev(fd, views, offset + done)
        done += n
        views = _remaining(views, n)


class _WriteBehind:
    """Runs writes in order on one helper thread, so they overlap the next group's crypto.

    Per-node AES-GCM on 4 KiB holds the GIL; a write releases it during the system call. ``count``
    rotating buffers bound the memory in flight.
    """

    def __init__(self, size: int, count: int = 4) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cloister-pfs-write")
        self.buffers = [memoryview(bytearray(size)) for _ in range(count)]
        self._pending: list[Future[object] | None] = [None] * count
        self.current = 0

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        try:
            for future in self._pending:
                if future is not None and exc_type is None:
                    future.result()
        finally:
            self._pool.shutdown(wait=True)

    def take(self) -> int:
        """The index of a buffer free to fill (after its previous write finished)."""
        future, self._pending[self.current] = self._pending[self.current], None
        if future is not None:
            future.result()
        return self.current

    def submit(self, write: Callable[..., object], *args: object) -> None:
        """Queue ``write(*args)``, which uses the buffer last taken."""
        self._pending[self.current] = self._pool.submit(write, *args)
        self.current = (self.current + 1) % len(self.buffers)


def _slot_views(buffer: memoryview, slots: int, length: int, stride: int = _SLOT) -> list[memoryview]:
    return [buffer[i * stride : i * stride + length] for i in range(slots)]


def _seal_group(
    plain: list[memoryview], sealed: list[memoryview], tags: memoryview, nodes: int, mht: bytearray
) -> None:
    """Encrypt ``nodes`` data nodes under fresh keys; their keys and tags fill the first entries of ``mht``."""
    keys = os.urandom(16 * nodes)
    for key, node, out in zip([keys[i : i + 16] for i in range(0, 16 * nodes, 16)], plain, sealed, strict=False):
        AESGCM(key).encrypt_into(_NONCE, node, None, out)
    for j in range(16):
        mht[j : 32 * nodes : 32] = keys[j::16]
        mht[16 + j : 32 * nodes : 32] = tags[NODE + j : _SLOT * nodes : _SLOT]


def _write_data(source: BinaryIO, destination: BinaryIO, mhts: list[bytearray], progress: Progress | None) -> int:
    """Encrypt the data beyond the head, ``_BATCH`` groups per read and write; appends the MHT plaintexts."""
    group_bytes = DATA_PER_MHT * NODE
    in_view = memoryview(bytearray(_BATCH * group_bytes))
    plain = [in_view[i * NODE : (i + 1) * NODE] for i in range(_BATCH * DATA_PER_MHT)]
    placeholder = memoryview(bytes(NODE))  # an MHT node's place, filled at the end
    size = HEAD
    with _WriteBehind(_BATCH * DATA_PER_MHT * _SLOT, count=3) as sink:
        sealed = [_slot_views(buffer, _BATCH * DATA_PER_MHT, _SLOT) for buffer in sink.buffers]
        texts = [_slot_views(buffer, _BATCH * DATA_PER_MHT, NODE) for buffer in sink.buffers]
        while filled := _read_full(source, in_view):
            size += filled
            total = -(-filled // NODE)
            in_view[filled : total * NODE] = bytes(total * NODE - filled)
            slot = sink.take()
            first = len(mhts)
            views: list[memoryview] = []
            for start in range(0, total, DATA_PER_MHT):
                nodes = min(DATA_PER_MHT, total - start)
                mht = bytearray(NODE)
                tags = sink.buffers[slot][start * _SLOT :]
                _seal_group(plain[start:], sealed[slot][start:], tags, nodes, mht)
                views += [placeholder, *texts[slot][start : start + nodes]]
                mhts.append(mht)
            sink.submit(_write_nodes, destination, views, mht_node_position(first) * NODE)
            if progress is not None:
                progress(size)
            if filled < len(in_view):
                break
    return size - HEAD


def write(
    user_key: bytes, source: BinaryIO, destination: BinaryIO, *, name: str, progress: Progress | None = None
) -> bytes:
    """Encrypt ``source`` into ``destination`` (seekable, empty) as a protected file named ``name``; returns the gmac.

    Data nodes are written as they come; MHT nodes stay in memory (4 KiB per 384 KiB of data) until the
    end, when they are encrypted bottom-up so each parent holds its children's keys and tags.
    """
    encoded_name = check_name(name)
    head_view = memoryview(bytearray(HEAD))
    size = _read_full(source, head_view)
    if progress is not None:
        progress(size)
    mhts: list[bytearray] = []
    if size == HEAD:
        size += _write_data(source, destination, mhts, progress)
    root_key = root_tag = bytes(16)
    for m in reversed(range(len(mhts))):
        key = os.urandom(16)
        sealed_mht = AESGCM(key).encrypt(_NONCE, bytes(mhts[m]), None)
        if m == 0:
            root_key, root_tag = key, sealed_mht[NODE:]
        else:
            parent, offset = _child_entry(m)
            mhts[parent][offset : offset + 32] = key + sealed_mht[NODE:]
        destination.seek(mht_node_position(m) * NODE)
        destination.write(sealed_mht[:NODE])
        mhts[m] = bytearray()
    key_id = os.urandom(32)
    part = struct.pack("<260sQ16s16s3072s", encoded_name, size, root_key, root_tag, head_view[:size].tobytes())
    sealed_part = AESGCM(metadata_key(user_key, key_id)).encrypt(_NONCE, part, None)
    gmac = sealed_part[len(part) :]
    metadata = _HEADER + key_id + bytes(32) + gmac + sealed_part[: len(part)]
    destination.seek(0)
    destination.write(metadata.ljust(NODE, b"\0"))
    return gmac


def _check_header(node: bytes) -> None:
    file_id, major, _minor, flags, update = struct.unpack_from("<QBBBB", node)
    if file_id != FILE_ID:
        raise FileIntegrityError("not a teaclave-file-128 (SGX protected) file: wrong file id")
    if major != 1:
        raise FileIntegrityError(f"teaclave-file-128: unsupported major version {major}")
    if update != 0:
        raise FileIntegrityError("teaclave-file-128: the file was not closed cleanly (update flag set)")
    if flags != 1:
        raise FileIntegrityError("teaclave-file-128: the file is not encrypted with a user key")


def read_cmac(source: BinaryIO) -> bytes:
    """The gmac at metadata offset 80, i.e. the file's cmac; needs no key."""
    source.seek(0)
    node = source.read(NODE)
    if len(node) != NODE:
        raise FileIntegrityError("teaclave-file-128: the file is shorter than its metadata node")
    _check_header(node)
    return node[80:96]


def read(
    user_key: bytes,
    source: BinaryIO,
    destination: BinaryIO | None,
    *,
    name: str,
    expected_cmac: bytes | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Verify and decrypt the protected file ``source`` (seekable) into ``destination`` (``None``: verify only).

    ``name`` is the basename the file must have been created with. The cmac is compared with
    ``expected_cmac`` before any plaintext is produced; later nodes are checked as they are decrypted, so
    the caller must discard ``destination`` when this raises. Returns the cmac.
    """
    gmac = read_cmac(source)
    if expected_cmac is not None and not hmac.compare_digest(gmac, expected_cmac):
        raise FileIntegrityError("teaclave-file-128: the file's cmac does not match the registered one")
    source.seek(0)
    node = source.read(NODE)
    try:
        part = AESGCM(metadata_key(user_key, node[16:48])).decrypt(_NONCE, node[_PART] + gmac, None)
    except InvalidTag:
        raise FileIntegrityError(
            "teaclave-file-128: the metadata does not verify (wrong key or tampered file)"
        ) from None
    created_as = part[:260].split(b"\0", 1)[0]
    if created_as != name.encode():
        shown = created_as.decode(errors="replace")
        raise FileNameMismatchError(f"teaclave-file-128: file name does not match (the file was created as {shown!r})")
    (size,) = struct.unpack_from("<Q", part, 260)
    data_nodes = -(-(size - HEAD) // NODE) if size > HEAD else 0
    expected_length = NODE * (data_node_position(data_nodes - 1) + 1 if data_nodes else 1)
    length = source.seek(0, os.SEEK_END)
    if length != expected_length:
        problem = "truncated" if length < expected_length else "longer than its size field allows"
        raise FileIntegrityError(
            f"teaclave-file-128: the file is {problem} ({length} bytes, expected {expected_length})"
        )
    if destination is not None:
        destination.write(part[300 : 300 + min(size, HEAD)])
    done = min(size, HEAD)
    if progress is not None:
        progress(done)
    if data_nodes:
        _read_tree(source, destination, part[268:300], size, data_nodes, progress)
    return gmac


def _read_tree(
    source: BinaryIO,
    destination: BinaryIO | None,
    root: bytes,
    size: int,
    data_nodes: int,
    progress: Progress | None,
) -> None:
    """Read the MHT groups in file order, ``_BATCH`` at a time, checking each node against its parent's entry."""
    mht_count = -(-data_nodes // DATA_PER_MHT)
    children: dict[int, bytes] = {}  # child-entry area of MHT nodes whose children are still to come
    in_view = memoryview(bytearray(_BATCH * _GROUP * _SLOT))  # per group: the MHT node, then its data nodes
    reads = _slot_views(in_view, _BATCH * _GROUP, NODE)
    done = HEAD
    with _WriteBehind(_BATCH * DATA_PER_MHT * NODE, count=3) as sink:
        plains = [_slot_views(b, _BATCH * DATA_PER_MHT, NODE, stride=NODE) for b in sink.buffers]
        for first in range(0, mht_count, _BATCH):
            last = min(first + _BATCH, mht_count)
            nodes_read = min(data_nodes, last * DATA_PER_MHT) - first * DATA_PER_MHT
            slots = nodes_read + last - first
            if _read_nodes(source, reads[:slots], mht_node_position(first) * NODE) != slots * NODE:
                raise FileIntegrityError("teaclave-file-128: the file shrank while it was read")
            slot = sink.take()
            for g, m in enumerate(range(first, last)):
                if m == 0:
                    entry = root
                else:
                    parent, offset = _child_entry(m)
                    entry = children[parent][offset - HEAD : offset - HEAD + 32]
                    if m == mht_count - 1 or offset == NODE - 32:
                        del children[parent]
                group = in_view[g * _GROUP * _SLOT : (g + 1) * _GROUP * _SLOT]
                mht = _open_mht(group, entry, m)
                if CHILDREN_PER_MHT * m + 1 < mht_count:
                    children[m] = mht[HEAD:]
                nodes = min(DATA_PER_MHT, data_nodes - m * DATA_PER_MHT)
                _open_group(group[_SLOT:], mht, nodes, plains[slot][g * DATA_PER_MHT :], m)
            plain = min(nodes_read * NODE, size - done)
            if destination is not None:
                sink.submit(destination.write, sink.buffers[slot][:plain])
            done += plain
            if progress is not None:
                progress(done)


def _open_mht(group: memoryview, entry: bytes, m: int) -> bytes:
    """Decrypt MHT node ``m`` (the group's first slot) with the key and tag of its parent's ``entry``."""
    group[NODE:_SLOT] = entry[16:]
    try:
        return AESGCM(entry[:16]).decrypt(_NONCE, group[:_SLOT], None)
    except InvalidTag:
        raise FileIntegrityError(f"teaclave-file-128: MHT node {m} does not verify (tampered file)") from None


def _open_group(sealed: memoryview, mht: bytes, nodes: int, plain: list[memoryview], m: int) -> None:
    """Decrypt the ``nodes`` data nodes in ``sealed`` (one per slot) into ``plain``, checking their tags."""
    for j in range(16):
        sealed[NODE + j : _SLOT * nodes : _SLOT] = mht[16 + j : 32 * nodes : 32]
    node_keys = [mht[i : i + 16] for i in range(0, 32 * nodes, 32)]
    texts = _slot_views(sealed, nodes, _SLOT)
    for node, (key, text, out) in enumerate(zip(node_keys, texts, plain, strict=False)):
        try:  # free unless raised (Python 3.11)
            AESGCM(key).decrypt_into(_NONCE, text, None, out)
        except InvalidTag:
            d = m * DATA_PER_MHT + node
            raise FileIntegrityError(f"teaclave-file-128: data node {d} does not verify (tampered file)") from None
