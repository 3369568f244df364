#!/usr/bin/env bash
# First start: build the FP16 engines for this GPU when no matching plan exists (s4c serve
# --build-engines), then run tritonserver with the TensorRT configs and the secure flags of
# s4c.serving.server (model control none, strict readiness, admin protocols behind S4C_ADMIN_KEY).
set -euo pipefail
key_file=$(mktemp)
if [ -n "${S4C_ADMIN_KEY:-}" ]; then
  printf '%s' "$S4C_ADMIN_KEY" > "$key_file"
else
  head -c 24 /dev/urandom | base64 > "$key_file"
  echo "S4C_ADMIN_KEY not set: the admin APIs are locked with a random key" >&2
fi
exec s4c serve --model-repository /models --form tensorrt --build-engines --address 0.0.0.0 \
  --admin-key-file "$key_file" "$@"
