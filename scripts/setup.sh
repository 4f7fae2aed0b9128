#!/usr/bin/env bash
# Everything the lab and the tests need on a fresh Debian 12 machine, as root: Debian packages,
# a running Docker engine, the systemd base images and the pinned Python virtualenv (.venv).
# Each step is skipped when already done. Sourced by scripts/lab and scripts/test.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"

log() { printf '\n==> %s\n' "$*" >&2; }

setup_packages() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v iptables >/dev/null || missing+=(iptables)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  # Headless Chromium opens the monitoring console page through the front door (cluster scenario).
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The app's tests start their own Redis; the packaged service is not needed.
  if [ -d /run/systemd/system ]; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
}

setup_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat "$ROOT/requirements-dev.txt" "$ROOT/app/requirements.txt" "$ROOT/app/requirements-test.txt" \
    | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  log "creating the pinned virtualenv $VENV"
  local python
  python=$(command -v python3.11 || command -v python3)
  "$python" -m venv "$VENV"
  rm -f "$stamp"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$ROOT/requirements-dev.txt" -r "$ROOT/app/requirements.txt" -r "$ROOT/app/requirements-test.txt"
  echo "$want" >"$stamp"
}

# promtool, for the unit tests of the role's alert rules (tests/test_monitoring_rules.py): taken out
# of Debian's prometheus package, whose installation would also start a Prometheus here.
TOOLS="$ROOT/.tools"
setup_promtool() {
  [ -x "$TOOLS/usr/bin/promtool" ] && return
  log "promtool from Debian's prometheus package"
  local work
  work=$(mktemp -d)
  (cd "$work" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; })
  dpkg-deb -x "$work"/prometheus_*.deb "$TOOLS"
  rm -rf "$work"
}

setup_all() {
  set -euo pipefail
  setup_packages
  log "Docker engine"
  bash "$ROOT/scripts/docker-engine.sh"
  log "systemd base images (Debian 12 and 13)"
  bash "$ROOT/scripts/base-images.sh" bookworm trixie
  setup_venv
  setup_promtool
  export PATH="$VENV/bin:$PATH"
  export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  setup_all
fi
