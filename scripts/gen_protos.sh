#!/usr/bin/env bash
# Regenerate the Python stubs in sdk/jobwarden/v1 from protos/ (pass --check to fail on a diff).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=sdk
target=sdk/jobwarden/v1
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out/jobwarden/v1"
"$python" -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$(dirname "$python")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$python")/protoc-gen-mypy_grpc" \
  protos/jobwarden/v1/*.proto
if [ "${1:-}" = "--check" ]; then
  if ! diff -r -x __init__.py -x py.typed -x __pycache__ "$out/jobwarden/v1" "$target"; then
    echo "generated stubs in $target are stale: run scripts/gen_protos.sh and commit the result" >&2
    exit 1
  fi
  echo "generated stubs are up to date"
fi
