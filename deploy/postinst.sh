#!/bin/sh
# pve-autoscaler postinst: the service's own system user and group.
# Files are under $DPKG_ROOT (dpkg --root; empty on a normal install).
set -e
etc="$DPKG_ROOT/etc/pve-autoscaler"
if [ "$1" = "configure" ] || [ "$1" = "" ]; then
  if ! getent group pve-autoscaler >/dev/null; then
    addgroup --system pve-autoscaler >/dev/null
  fi
  if ! getent passwd pve-autoscaler >/dev/null; then
    adduser --system --ingroup pve-autoscaler --no-create-home --home /nonexistent \
      --shell /usr/sbin/nologin --gecos "pve-autoscaler" pve-autoscaler >/dev/null
  fi
  chown root:pve-autoscaler "$etc" "$etc/config.yaml"
  chmod 0750 "$etc"
  chmod 0640 "$etc/config.yaml"
  if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    # An upgrade ($2 is the version it replaces) restarts a running daemon
    # on the new binary; a first install starts nothing: the config needs
    # editing first. try-restart leaves a stopped daemon stopped.
    if [ -n "$2" ]; then
      deb-systemd-invoke try-restart pve-autoscaler.service >/dev/null || true
    fi
  fi
  if [ -n "$2" ]; then
    exit 0
  fi
  echo "pve-autoscaler installed. Edit /etc/pve-autoscaler/config.yaml, check it with"
  echo "  pve-autoscaler validate --config /etc/pve-autoscaler/config.yaml"
  echo "then run it in dry-run first: pve-autoscaler run --config /etc/pve-autoscaler/config.yaml --dry-run"
fi
exit 0
