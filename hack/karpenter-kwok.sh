#!/usr/bin/env bash
# Builds (once) Karpenter's kwok cloud provider, the peer `make bench-peers`
# measures pve-autoscaler against, from the Go module proxy into a versioned
# cache folder beside the Kubernetes test bed, with the CRDs of the module's
# kwok chart (NodePool, NodeClaim, NodeOverlay) and its KWOKNodeClass.
# Built as its own module (go install pkg@version): nothing of Karpenter
# enters our go.mod. Idempotent: a .complete marker means done.
#
#   hack/karpenter-kwok.sh          build or reuse; prints the folder
#   KARPENTER_DIR=... overrides the folder
set -euo pipefail

KARPENTER_VERSION=v1.13.0
# The module asks for go 1.26.4 (ours, 1.26.8, builds it). A later pin may
# ask for more: set KARPENTER_GOTOOLCHAIN=go1.27.3 then, for this build only.
export GOTOOLCHAIN=${KARPENTER_GOTOOLCHAIN:-local}

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pve-autoscaler
OUT=${KARPENTER_DIR:-$CACHE/karpenter-kwok-$KARPENTER_VERSION}
mkdir -p "$OUT"
unset GOFLAGS

if [ ! -f "$OUT/.complete" ]; then
  echo "building Karpenter's kwok provider $KARPENTER_VERSION (first run only, several minutes)" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  GOBIN="$work" nice -n 10 go install -ldflags "-s -w" sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION
  src=$(go mod download -json sigs.k8s.io/karpenter@$KARPENTER_VERSION | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$OUT/crds"
  cp "$src"/kwok/charts/crds/*.yaml "$src"/kwok/apis/crds/*.yaml "$OUT/crds/"
  chmod u+w "$OUT"/crds/*.yaml
  mv "$work/kwok" "$OUT/karpenter-kwok"
  touch "$OUT/.complete"
fi
echo "$OUT"
