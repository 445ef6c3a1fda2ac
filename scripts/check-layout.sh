#!/usr/bin/env bash
# The dependency rules of ARCHITECTURE.md, checked on every test run: a forbidden import fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
forbid() { # forbid DIR_OR_FILES... -- PATTERN MESSAGE
  local files=() pattern message
  while [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift; pattern=$1; message=$2
  if grep -rEn "$pattern" "${files[@]}"; then echo "layout: $message" >&2; fail=1; fi
}
# The scheduler is pure: no runtime, no HTTP, nothing of the rest of swarm.
forbid src/scheduler -- '(tokio|hyper)::|use (tokio|hyper)' "src/scheduler must not use tokio or hyper"
forbid src/scheduler -- 'crate::(api|app|cluster|discovery|leadership|store)\b' "src/scheduler must not import other modules of swarm"
# Producers never import their consumer, the Docker API front.
forbid src/control src/cluster src/discovery src/scheduler src/store src/leadership src/tls.rs src/config.rs src/cli.rs src/metrics.rs src/body.rs src/api_version.rs src/backoff.rs -- 'crate::api(::|\b)' "only src/api and src/app.rs may import crate::api (the control plane stands apart from it)"
# The orchestrator acts on the cluster, not on HTTP requests.
forbid src/orchestrator -- 'crate::(api|control)(::|\b)' "src/orchestrator must not import the API front or the control plane"
# Engines, managers and etcd are reached through their own clients, not through the cluster.
forbid src/discovery src/leadership src/store src/etcd src/control src/transport.rs -- 'crate::cluster(::|\b)' "use crate::transport (HTTP) or crate::etcd, not crate::cluster"
# The fence is the election's: the store reads it, the election never reads the store.
forbid src/leadership -- 'crate::store(::|\b)' "src/leadership must not import crate::store"
# The composition root is imported by nobody but the binary.
forbid $(find src -name '*.rs' ! -path src/main.rs ! -path src/app.rs) -- 'crate::app\b' "nothing but src/main.rs imports crate::app"
# No import cycle between top-level modules: tsort refuses a graph with a loop.
edges=$(for f in $(find src -name '*.rs'); do
  m=${f#src/}; m=${m%%/*}; m=${m%.rs}
  grep -ohE 'crate::[a-z_]+' "$f" | sed 's/crate:://' | sort -u | while read -r d; do [ "$d" != "$m" ] && echo "$m $d"; done
done | sort -u)
if ! echo "$edges" | tsort >/dev/null 2>/tmp/layout-tsort.$$; then
  cat /tmp/layout-tsort.$$ >&2
  echo "layout: the top-level modules import each other in a cycle (above)" >&2
  fail=1
fi
rm -f /tmp/layout-tsort.$$
exit $fail
