"""WebAssembly functions on wasmtime, speaking Teaclave's WAMR ABI (reference §11.6).

A plain synchronous library: the wasm executor calls :func:`run_wasm` inside its sandboxed worker
process. The guest gets five ``env`` imports over the task's files; every guest pointer is
bounds-checked, and fuel plus a linear-memory cap bound what a hostile module can take.

Candid notes: WAMR reports a trap as a *successful* summary and panics on a bad module (§11.6
[QUIRK]); both fail the task here instead. Teaclave's C payloads that link WAMR's libc-builtin
(``env.atoi`` and friends) are not supported: such imports make the module invalid.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import wasmtime

from cloister.executors.arguments import flat_arguments
from cloister.functions import FileRuntime, FunctionError

__all__ = ["WRITE_HANDLE_BIT", "WasmLimits", "flat_arguments", "run_wasm"]

WRITE_HANDLE_BIT = 0x4000_0000
"""Set in every handle ``teaclave_create_output`` returns (§11.3), clear in read handles."""

_MAX_NAME_BYTES = 4096
_U32 = 0xFFFF_FFFF
"""Guest pointers arrive as signed i32s; C means them unsigned."""
_WASM_MAGIC = b"\0asm"
_NO_ENTRYPOINT = "the module exports no entrypoint(argc, argv) function"
_NO_MEMORY = 'the module exports no 32-bit linear memory named "memory"'
_T = TypeVar("_T")


@dataclass(frozen=True)
class WasmLimits:
    """What one task's module may use.

    Attributes:
        memory_bytes: the most linear memory the module may hold; ``memory.grow`` beyond it fails.
        fuel: wasmtime fuel (about one unit per instruction); running out fails the task.
        max_handles: file handles the module may allocate in total (§11.3: 1023).
    """

    memory_bytes: int = 64 * 1024 * 1024
    fuel: int = 10_000_000_000
    max_handles: int = 1023


def run_wasm(payload: bytes, arguments: dict[str, Any], files: FileRuntime, limits: WasmLimits = WasmLimits()) -> str:
    """Run the module's ``int entrypoint(int argc, char **argv)`` and return its result in decimal.

    ``payload`` is a binary module or WAT text. Output files the module leaves open are closed
    (so written) when it returns, whether or not it succeeded.

    Raises:
        FunctionError: the module is invalid, lacks ``entrypoint`` or an exported ``memory``,
            traps, runs out of fuel or exceeds ``limits.memory_bytes``.
    """
    module = _compile(_engine(), payload)
    _check_exports(module, limits)
    guest = _Guest(files, limits)
    try:
        return str(guest.run(module, flat_arguments(arguments)))
    finally:
        guest.close_all()


@functools.cache
def _engine() -> wasmtime.Engine:
    """One engine per process: fuel metering on, everything else wasmtime's defaults."""
    config = wasmtime.Config()
    config.consume_fuel = True
    # Reserve address space as memory grows instead of wasmtime's default 4 GiB plus guard per
    # memory, so a worker under a modest RLIMIT_AS can still instantiate modules.
    config.memory_reservation = 0
    config.memory_guard_size = 64 * 1024
    config.memory_reservation_for_growth = 1024 * 1024
    return wasmtime.Engine(config)


def _compile(engine: wasmtime.Engine, payload: bytes) -> wasmtime.Module:
    try:
        if payload.startswith(_WASM_MAGIC):
            return wasmtime.Module(engine, payload)
        return wasmtime.Module(engine, wasmtime.wat2wasm(payload.decode("utf-8")))
    except UnicodeDecodeError:
        raise FunctionError("invalid WebAssembly module: neither binary WebAssembly nor UTF-8 text") from None
    except wasmtime.WasmtimeError as error:
        raise FunctionError(f"invalid WebAssembly module: {_summary(str(error))}") from None


def _check_exports(module: wasmtime.Module, limits: WasmLimits) -> None:
    """Fail before instantiating (and so before any start function runs) when the ABI is not met."""
    exports = {export.name: export.type for export in module.exports}
    if not _has_signature(exports.get("entrypoint"), 2):
        raise FunctionError(_NO_ENTRYPOINT)
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType) or memory.is_64:
        raise FunctionError(_NO_MEMORY)
    if memory.limits.min * memory.page_size > limits.memory_bytes:
        raise FunctionError(_memory_limit(limits))


def _has_signature(kind: object, params: int) -> bool:
    """Whether ``kind`` is a function type taking ``params`` i32s and returning one i32."""
    i32 = wasmtime.ValType.i32()
    return isinstance(kind, wasmtime.FuncType) and kind.params == [i32] * params and kind.results == [i32]


class _Guest:
    """One task's store and instance, and the host side of its file-handle ABI (§11.3, §11.6)."""

    def __init__(self, files: FileRuntime, limits: WasmLimits) -> None:
        self._files = files
        self._limits = limits
        self._handles: dict[int, BinaryIO] = {}
        self._allocated = 0
        self._memory: wasmtime.Memory | None = None
        self._store = wasmtime.Store(_engine())
        self._store.set_fuel(limits.fuel)
        self._store.set_limits(memory_size=limits.memory_bytes)

    def run(self, module: wasmtime.Module, argv: list[str]) -> int:
        linker = wasmtime.Linker(_engine())
        for name, params, host in (
            ("teaclave_open_input", 1, self._open_input),
            ("teaclave_create_output", 1, self._create_output),
            ("teaclave_read_file", 3, self._read_file),
            ("teaclave_write_file", 3, self._write_file),
            ("teaclave_close_file", 1, self._close_file),
        ):
            kind = wasmtime.FuncType([wasmtime.ValType.i32()] * params, [wasmtime.ValType.i32()])
            linker.define_func("env", name, kind, host, access_caller=True)
        store = self._store
        instance = self._guarded(lambda: linker.instantiate(store, module), "invalid WebAssembly module")
        exports = instance.exports(store)
        memory, entrypoint = exports["memory"], exports["entrypoint"]
        assert isinstance(memory, wasmtime.Memory) and isinstance(entrypoint, wasmtime.Func)
        self._memory = memory
        argv_pointer = self._place_arguments(exports, memory, argv)
        result: int = self._guarded(lambda: entrypoint(store, len(argv), argv_pointer))
        return result

    def close_all(self) -> None:
        """Close what the guest left open, so its outputs are complete."""
        for handle in list(self._handles):
            self._close(handle)

    # -- argv ---------------------------------------------------------------------------------

    def _place_arguments(self, exports: wasmtime.InstanceExports, memory: wasmtime.Memory, argv: list[str]) -> int:
        """Copy argv into guest memory as C expects it: a NULL-ended pointer array, then the strings."""
        strings = [arg.encode("utf-8") + b"\0" for arg in argv]
        table_size = 4 * (len(strings) + 1)
        base = self._allocate(exports, memory, table_size + sum(map(len, strings)))
        pointers, offset = [], base + table_size
        for string in strings:
            pointers.append(offset)
            offset += len(string)
        table = b"".join(pointer.to_bytes(4, "little") for pointer in [*pointers, 0])
        memory.write(self._store, table + b"".join(strings), base)
        return base

    def _allocate(self, exports: wasmtime.InstanceExports, memory: wasmtime.Memory, size: int) -> int:
        """Guest memory for ``size`` bytes: the module's own ``malloc`` if it has one, else new pages."""
        store = self._store
        malloc = exports.get("malloc")
        if isinstance(malloc, wasmtime.Func) and _has_signature(malloc.type(store), 1):
            pointer = self._guarded(lambda: malloc(store, size)) & _U32
            if pointer and pointer + size <= memory.data_len(store):
                return pointer
        start = memory.data_len(store)
        try:
            memory.grow(store, -(-size // memory.page_size(store)))
        except wasmtime.WasmtimeError:
            if start + size > self._limits.memory_bytes:
                raise FunctionError(_memory_limit(self._limits)) from None
            raise FunctionError("the module's memory is at its declared maximum; the arguments do not fit") from None
        return start

    def _guarded(self, call: Callable[[], _T], error_prefix: str = "wasm error") -> _T:
        """Run guest code, turning wasmtime's failures into :class:`FunctionError` reasons."""
        try:
            return call()
        except wasmtime.Trap as trap:
            if trap.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                raise FunctionError("wasm function ran out of fuel (its CPU budget)") from None
            if self._memory_full():
                raise FunctionError(_memory_limit(self._limits)) from None
            raise FunctionError(f"wasm trap: {_trap_text(trap)}") from None
        except wasmtime.WasmtimeError as error:
            if "exceeds memory limits" in str(error):
                raise FunctionError(_memory_limit(self._limits)) from None
            raise FunctionError(f"{error_prefix}: {_summary(str(error))}") from None

    def _memory_full(self) -> bool:
        """Whether the guest holds all the memory it may: a trap then most likely follows a refused grow.

        wasmtime's C API cannot make a refused ``memory.grow`` trap by itself, so this is inferred.
        """
        memory = self._memory
        if memory is None:
            return False
        return memory.data_len(self._store) + memory.page_size(self._store) > self._limits.memory_bytes

    # -- host imports: each returns -1 on any guest mistake and never raises ---------------------

    def _open_input(self, caller: wasmtime.Caller, name_pointer: int) -> int:
        return self._open(caller, name_pointer, write=False)

    def _create_output(self, caller: wasmtime.Caller, name_pointer: int) -> int:
        return self._open(caller, name_pointer, write=True)

    def _open(self, caller: wasmtime.Caller, name_pointer: int, *, write: bool) -> int:
        name = _read_name(caller, name_pointer & _U32)
        if name is None or self._allocated >= self._limits.max_handles:
            return -1
        try:
            stream = self._files.create_output(name) if write else self._files.open_input(name)
        except (FunctionError, OSError, ValueError):
            return -1
        self._allocated += 1
        handle = self._allocated | (WRITE_HANDLE_BIT if write else 0)
        self._handles[handle] = stream
        return handle

    def _read_file(self, caller: wasmtime.Caller, handle: int, buffer: int, size: int) -> int:
        buffer &= _U32
        stream = self._handles.get(handle) if not handle & WRITE_HANDLE_BIT else None
        memory = _guest_range(caller, buffer, size)
        if stream is None or memory is None:
            return -1
        try:
            data = (stream.read(size) if size else b"") or b""
        except (FunctionError, OSError, ValueError):
            return -1
        if data:
            memory.write(caller, data[:size], buffer)
        return min(len(data), size)

    def _write_file(self, caller: wasmtime.Caller, handle: int, buffer: int, size: int) -> int:
        buffer &= _U32
        stream = self._handles.get(handle) if handle & WRITE_HANDLE_BIT else None
        memory = _guest_range(caller, buffer, size)
        if stream is None or memory is None:
            return -1
        try:
            written = stream.write(bytes(memory.read(caller, buffer, buffer + size)) if size else b"")
        except (FunctionError, OSError, ValueError):
            return -1
        return size if written is None else written

    def _close_file(self, caller: wasmtime.Caller, handle: int) -> int:
        return self._close(handle)

    def _close(self, handle: int) -> int:
        stream = self._handles.pop(handle, None)
        if stream is None:
            return -1
        try:
            stream.close()
        except (FunctionError, OSError, ValueError):
            return -1
        return 0


def _guest_range(caller: wasmtime.Caller, pointer: int, size: int) -> wasmtime.Memory | None:
    """The guest's memory if ``[pointer, pointer + size)`` lies inside it, else None."""
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory) or pointer < 0 or size < 0:
        return None
    return memory if pointer + size <= memory.data_len(caller) else None


def _read_name(caller: wasmtime.Caller, pointer: int) -> str | None:
    """A NUL-terminated UTF-8 data name at ``pointer``, or None when it is out of bounds or malformed."""
    memory = _guest_range(caller, pointer, 1)
    if memory is None:
        return None
    end = min(pointer + _MAX_NAME_BYTES + 1, memory.data_len(caller))
    raw = bytes(memory.read(caller, pointer, end))
    terminator = raw.find(b"\0")
    if terminator < 0:
        return None
    try:
        return raw[:terminator].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _memory_limit(limits: WasmLimits) -> str:
    return f"wasm memory limit of {limits.memory_bytes} bytes exceeded"


def _trap_text(trap: wasmtime.Trap) -> str:
    """``out of bounds memory access``: the cause wasmtime gives, without its backtrace."""
    causes = [line.strip() for line in trap.message.splitlines() if "wasm trap: " in line]
    if causes:
        return causes[-1].split("wasm trap: ", 1)[1]
    code = trap.trap_code
    return code.name.lower().replace("_", " ") if code is not None else _summary(trap.message)


def _summary(text: str) -> str:
    """wasmtime's multi-line error on one line: the headline and its causes, no source excerpt."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    causes: list[str] = []
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1 :]
        causes = [line.split(": ", 1)[1] if line[:1].isdigit() and ": " in line else line for line in after]
    location = next((line[4:] for line in lines[1:] if line.startswith("--> ")), None)
    summary = ": ".join([lines[0], *causes])
    if location:
        summary += f" (at {location})"
    return summary[:300]
