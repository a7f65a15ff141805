#!/bin/sh
# pve-autoscaler prerm: stop the daemon before its files are removed. On
# an upgrade it keeps running until postinst restarts it on the new binary;
# a daemon stopped mid-step resumes from the step recorded on its VM.
set -e
if [ -z "$DPKG_ROOT" ] && [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
  deb-systemd-invoke stop pve-autoscaler.service >/dev/null || true
fi
exit 0
