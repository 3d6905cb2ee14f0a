#!/usr/bin/env bash
# Installs what the host-network tests (tests/hosts) run besides the project: HAProxy and nginx
# (the balancers docs/deployment.md configures), iptables (to cut a host off from PostgreSQL)
# and iproute2 (`ip netns`, veth pairs, bridges). Debian packages; idempotent: apt-get runs only
# when something is missing. PostgreSQL's server binaries and redis-server come with the
# machine, as for the rest of the suite.
set -euo pipefail

declare -A PACKAGES=([haproxy]=haproxy [nginx]=nginx [iptables]=iptables [ip]=iproute2 [setpriv]=util-linux)
missing=()
for cmd in "${!PACKAGES[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
    missing+=("${PACKAGES[$cmd]}")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # The packages would start their default services (nginx on port 80) where systemd or
  # sysvinit runs; the tests start their own, inside network namespaces, so none is wanted.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "hosts: $(haproxy -v 2>/dev/null | head -n1); $(nginx -v 2>&1); $(iptables -V)"
