#!/usr/bin/env bash
# docker/base-image.sh [IMAGE]: a Debian bookworm base image built locally, for machines that reach Debian's
# mirror and PyPI but no image registry (the compose test; the Dockerfiles take it as BASE_IMAGE).
#
#   debootstrap --variant=minbase bookworm DIR http://deb.debian.org/debian
#   tar -C DIR -c . | docker import - IMAGE
#
# IMAGE defaults to forge-debian:bookworm; it is kept when it exists (FORCE=1 rebuilds it). Needs root,
# debootstrap and a running Docker daemon. Environment:
#   DEBIAN_MIRROR   default http://deb.debian.org/debian
#   EXTRA_CA_DIR    CA certificates (*.crt) the image should trust besides Debian's, default
#                   /usr/local/share/ca-certificates (the host's own additions, e.g. a TLS-inspecting proxy's);
#                   "" for none. They are copied into the image's /usr/local/share/ca-certificates, where
#                   Debian's ca-certificates package (installed by the Dockerfiles) adds them to the bundle,
#                   and pip is pointed at that bundle (PIP_CERT), as on the host.
set -euo pipefail
IMAGE=${1:-forge-debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_DIR=${EXTRA_CA_DIR-/usr/local/share/ca-certificates}
DOCKER=${DOCKER:-docker}

if [ -z "${FORCE:-}" ] && $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists (FORCE=1 to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

work=$(mktemp -d /var/tmp/forge-debootstrap.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s.%N)
debootstrap --variant=minbase bookworm "$work/root" "$MIRROR" > "$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; echo "debootstrap failed (log above)" >&2; exit 1; }
# what the official debian image also does: no apt caches, the same sources inside as outside
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
changes=()
if [ -n "$CA_DIR" ] && compgen -G "$CA_DIR/*.crt" >/dev/null; then
  mkdir -p "$work/root/usr/local/share/ca-certificates"
  cp "$CA_DIR"/*.crt "$work/root/usr/local/share/ca-certificates/"
  # until ca-certificates is installed in the image, the host's bundle (if any) stands in for it
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$work/root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/ca-certificates.crt"
  fi
  changes+=(--change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
  echo "base image trusts the extra CA certificates in $CA_DIR ($(ls "$CA_DIR"/*.crt | wc -l) file(s))"
fi
tar -C "$work/root" -c . | $DOCKER import "${changes[@]}" --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
end=$(date +%s.%N)
printf 'base image %s built in %s s (%s)\n' "$IMAGE" "$(awk "BEGIN {printf \"%.1f\", $end - $start}")" \
  "$($DOCKER image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
