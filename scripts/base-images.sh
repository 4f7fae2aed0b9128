#!/usr/bin/env bash
# Build the systemd base images the Molecule scenarios and the lab run on, from Debian's
# archive with debootstrap (no container registry is needed or used). Images are cached: an
# existing image is kept unless it was built by another version of this script (each image
# carries the script's SHA-256 in its DJANGO_CELERY_IMAGE_BUILD variable) or REBUILD_IMAGES=1.
#   usage: scripts/base-images.sh [bookworm] [trixie]
set -euo pipefail

log() { printf '[base-images] %s\n' "$*" >&2; }

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

# The machine's own Debian mirror (deb822 or one-line sources), plain HTTP is fine: apt verifies
# the archive signatures itself.
mirror=$(grep -hvE '^[[:space:]]*#' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -n 1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

build_id=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)

for suite in "${suites[@]}"; do
  image="django-celery-systemd:${suite}"
  built_by=$(docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" 2>/dev/null \
    | sed -n 's/^DJANGO_CELERY_IMAGE_BUILD=//p' || true)
  if [ "${REBUILD_IMAGES:-0}" != 1 ] && [ "$built_by" = "$build_id" ]; then
    log "$image is cached (build $build_id)"
    continue
  fi
  [ -z "$built_by" ] || log "$image was built by another version of this script ($built_by): rebuilding"
  root=$(mktemp -d "/var/tmp/rootfs-${suite}.XXXXXX")
  log "debootstrap $suite from $mirror into $root"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,sudo,ca-certificates,procps,iproute2 \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 40 "$root.log" >&2; exit 1; }
  # Units that cannot work in a container: kernel module loading (fails on Debian 13 and
  # would leave the system "degraded"), and gettys on consoles that do not exist.
  for unit in systemd-modules-load.service getty@tty1.service console-getty.service \
      systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # apt inside the image: the same mirror, plus security updates.
  printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
  rm -f "$root"/etc/apt/sources.list.d/*.sources
  echo "$suite-test" >"$root/etc/hostname"
  tar -C "$root" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' -c "ENV DJANGO_CELERY_IMAGE_BUILD=$build_id" \
    - "$image" >/dev/null
  rm -rf "$root" "$root.log"
  log "built $image (build $build_id)"
done
