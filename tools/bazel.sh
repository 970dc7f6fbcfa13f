#!/usr/bin/env bash
# Runs Bazel: bazelisk (honouring .bazelversion) where it is on PATH, else
# Debian's bazel-bootstrap (bazel-4), else whatever `bazel` is.
set -euo pipefail
for candidate in bazelisk bazel-4 bazel; do
  if command -v "$candidate" >/dev/null 2>&1; then
    exec "$candidate" "$@"
  fi
done
echo "tools/bazel.sh: no Bazel found; run tools/setup_bazel.sh" >&2
exit 1
