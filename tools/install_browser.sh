#!/usr/bin/env bash
# Debian's Chromium for the WebXR viewer test (tests/test_webxr.py), installed only when it
# is missing and this machine can (root with apt-get). Elsewhere that test skips and says so.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && exit 0
fi
echo "chromium is not installed: tests/test_webxr.py will skip (apt-get install chromium)" >&2
exit 0
