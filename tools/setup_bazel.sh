#!/usr/bin/env bash
# Makes sure a Bazel is available. On Debian as root it installs the offline
# default, bazel-bootstrap (Bazel 4.2.3); elsewhere it says what to install.
set -euo pipefail
for candidate in bazelisk bazel-4 bazel; do
  command -v "$candidate" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -f /etc/debian_version ]; then
  echo "Installing Bazel (Debian package bazel-bootstrap)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq bazel-bootstrap >/dev/null
  exit 0
fi
cat >&2 <<'MSG'
No Bazel found. Install one of:
  - Debian/Ubuntu (works offline): sudo apt-get update && sudo apt-get install bazel-bootstrap
  - Bazelisk (downloads the version in .bazelversion): https://github.com/bazelbuild/bazelisk
Then run the make target again.
MSG
exit 1
