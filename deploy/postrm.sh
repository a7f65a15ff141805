#!/bin/sh
# pve-autoscaler postrm: systemd forgets the removed unit; a purge removes
# the service's system user and group too (dpkg removes the conffile).
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
  case "$1" in
    remove|purge) systemctl --system daemon-reload >/dev/null || true ;;
  esac
fi
if [ "$1" = "purge" ]; then
  # adduser may itself be gone by now: then the user stays, as it would
  # with any package whose postrm cannot run deluser.
  if getent passwd pve-autoscaler >/dev/null && command -v deluser >/dev/null; then
    deluser --system --quiet pve-autoscaler >/dev/null || true
  fi
  if getent group pve-autoscaler >/dev/null && command -v delgroup >/dev/null; then
    delgroup --system --quiet pve-autoscaler >/dev/null || true
  fi
fi
exit 0
