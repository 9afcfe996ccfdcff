"""Regenerate hamustro_cli/payload_pb2.py from proto/payload.proto.

Run: python tools/gen_proto.py   (needs the `test` extra: grpcio-tools)
tests/test_proto.py runs the same generation and fails when the committed file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(out_dir: Path) -> Path:
    from grpc_tools import protoc

    rc = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out_dir}", str(ROOT / "proto" / "payload.proto")]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return out_dir / "payload_pb2.py"


if __name__ == "__main__":
    path = generate(ROOT / "hamustro_cli")
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
