#!/usr/bin/env bash
# Builds (once) the real Kubernetes control plane the tests and the demo run
# on loopback: etcd, kube-apiserver, kube-scheduler, kube-controller-manager
# and kwok, from the Go module proxy, into a versioned cache folder.
# Idempotent: binaries already built (a .complete marker) are reused.
#
#   hack/kube-testbed.sh            build or reuse; prints the folder
#   KUBE_TESTBED_DIR=... overrides the folder
set -euo pipefail

ETCD_VERSION=v3.7.0
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
KWOK_VERSION=v0.8.0

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pve-autoscaler
OUT=${KUBE_TESTBED_DIR:-$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION}
mkdir -p "$OUT"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

need() { [ -x "$OUT/$1" ] && [ -f "$OUT/.$1.complete" ]; }
done_() { touch "$OUT/.$1.complete"; }

if ! need etcd; then
  echo "building etcd $ETCD_VERSION (first run only)" >&2
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init etcdbuild >/dev/null 2>&1
  go get go.etcd.io/etcd/server/v3@$ETCD_VERSION >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
  done_ etcd
fi

if ! need kube-apiserver || ! need kube-scheduler || ! need kube-controller-manager; then
  for b in kube-apiserver kube-scheduler kube-controller-manager; do
    echo "building $b $KUBE_VERSION (first run only)" >&2
  done
  src=$(cd "$work" && go mod download -json k8s.io/kubernetes@$KUBE_VERSION | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  cp -r "$src" "$work/kubernetes"
  chmod -R u+w "$work/kubernetes"
  cd "$work/kubernetes"
  rm -f go.work go.work.sum
  args=()
  for m in $(go mod edit -json | sed -n 's/.*"Path": "\(k8s.io\/[^"]*\)".*/\1/p' | sort -u); do
    # Staging modules: required at v0.0.0 and replaced by ./staging/...
    if grep -qE "^\s*$m => \./staging" go.mod || grep -qE "^\s*$m v0\.0\.0$" go.mod; then
      args+=(-dropreplace="$m" -require="$m@$KUBE_STAGING_VERSION")
    fi
  done
  go mod edit "${args[@]}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
  go build -trimpath -ldflags "$ldflags" -o "$OUT/" ./cmd/kube-apiserver ./cmd/kube-scheduler ./cmd/kube-controller-manager
  done_ kube-apiserver; done_ kube-scheduler; done_ kube-controller-manager
fi

if ! need kwok; then
  echo "building kwok $KWOK_VERSION (first run only)" >&2
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION
  done_ kwok
fi

if ! [ -f "$OUT/.kwok-stages.yaml.complete" ]; then
  # kwok's own stages, as its module ships them: nodes become Ready and keep
  # a lease heartbeat; pods become Ready, Jobs complete, deletions finish.
  kwokdir=$(cd "$work" && go mod download -json sigs.k8s.io/kwok@$KWOK_VERSION | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  st="$kwokdir/kustomize/stage"
  : > "$OUT/kwok-stages.yaml"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    { echo "---"; cat "$st/$f"; } >> "$OUT/kwok-stages.yaml"
  done
  done_ kwok-stages.yaml
fi

echo "$OUT"
