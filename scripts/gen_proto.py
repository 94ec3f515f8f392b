"""Regenerate src/cloister/_proto from proto/*.proto.

protoc writes imports by bare module name (``import teaclave_common_pb2``); inside a package
they must be relative, so the generated files are rewritten once here. Run with
``python scripts/gen_proto.py [OUT_DIR]``; ``--check`` (run by ``make lint``) fails when the
committed files are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "src" / "cloister" / "_proto"
_BARE_IMPORT = re.compile(r"^import (\w+_pb2) as", re.MULTILINE)


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.name) for p in PROTO_DIR.glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *protos,
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    for path in out_dir.glob("*_pb2*.py*"):
        text = path.read_text()
        path.write_text(_BARE_IMPORT.sub(r"from . import \1 as", text))
    init = out_dir / "__init__.py"
    init.write_text('"""Generated gRPC and protobuf modules (layer 0): never edit, run scripts/gen_proto.py."""\n')


def check() -> int:
    """Exit status 1 when the committed modules differ from what the .proto files generate."""
    import filecmp
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        names = sorted(p.name for p in fresh.iterdir() if p.is_file())
        stale = [
            n for n in names if not (DEFAULT_OUT / n).exists() or not filecmp.cmp(fresh / n, DEFAULT_OUT / n, False)
        ]
    if stale:
        print(f"src/cloister/_proto is out of date ({', '.join(stale)}): run 'make proto'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        raise SystemExit(check())
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
