#!/usr/bin/env bash
# Regenerates llb/_proto/*_pb2.py and *_pb2_grpc.py from the hand-written
# llb/_proto/*.proto. Needs grpcio-tools (the "dev" extra).
#
# The .proto files are compiled with the repository root as include path so
# their descriptor names are "llb/_proto/<name>.proto" (unique in the global
# descriptor pool); the generated absolute imports are then made relative so
# the package can be vendored under another name.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi

out=llb/_proto
rm -f "$out"/*_pb2.py "$out"/*_pb2_grpc.py "$out"/*_pb2.pyi
"$python" -m grpc_tools.protoc -I . \
  --python_out=. --pyi_out=. --grpc_python_out=. \
  "$out"/*.proto

for f in "$out"/*_pb2.py "$out"/*_pb2_grpc.py "$out"/*_pb2.pyi; do
  sed -i -E 's/^from llb\._proto import ([a-z_]+_pb2)/from . import \1/' "$f"
done

# Services without RPCs of their own produce near-empty grpc stubs; keep only useful ones.
for f in "$out"/*_pb2_grpc.py; do
  if ! grep -q 'class .*Stub' "$f"; then rm -f "$f"; fi
done

[[ -f "$out/__init__.py" ]] || printf '"""Generated protobuf code for the BuildKit v0.8 wire protocol."""\n' >"$out/__init__.py"

"$python" - <<'PY'
import importlib, pathlib
for p in sorted(pathlib.Path("llb/_proto").glob("*_pb2*.py")):
    importlib.import_module(f"llb._proto.{p.stem}")
print("generated and imported:", len(list(pathlib.Path("llb/_proto").glob("*_pb2*.py"))), "modules")
PY
