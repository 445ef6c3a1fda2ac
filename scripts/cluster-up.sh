#!/usr/bin/env bash
# The main job: a local cluster of three real Docker engines (node-1..3, each with its own
# hostname, data root and labels) and three swarm managers replicating through embedded Raft
# (no etcd), behind HAProxy (haproxy/haproxy.cfg). Each engine joins through the managers
# (`swarm join ... swarm://`). Each manager is restarted a second after it exits, as a service
# manager would, so that killing one again and again is a fair demonstration. Prints the
# DOCKER_HOST to use (HAProxy: it survives losing any one manager), then runs in the
# foreground until Ctrl-C, when it stops everything it started, by pid.
#   SWARM_ENGINES=3  SWARM_PORT=4000 (managers on 4000-4002)  SWARM_LB_PORT=2375 (HAProxy)
#   SWARM_LB_METRICS_PORT=8404 (HAProxy's Prometheus metrics)
#   SWARM_STATE=/tmp/swarm-cluster
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet
n_engines=${SWARM_ENGINES:-3}
port=${SWARM_PORT:-4000}
lb_port=${SWARM_LB_PORT:-2375}
lb_metrics_port=${SWARM_LB_METRICS_PORT:-8404}
state=${SWARM_STATE:-/tmp/swarm-cluster}
mkdir -p "$state"
pids=()

stop_all() {
  trap - EXIT INT TERM
  echo "stopping the cluster..."
  # Processes started in a session of their own are stopped with their whole group.
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT INT TERM

# A busybox image made from Debian's static busybox: no registry needed.
rootfs="$state/busybox-root"
rm -rf "$rootfs" && mkdir -p "$rootfs/bin" && cp /bin/busybox "$rootfs/bin/"
for a in sh sleep echo cat ls httpd nc true env hostname top ps wget stty; do ln -sf busybox "$rootfs/bin/$a"; done
tar -C "$rootfs" -cf "$state/busybox.tar" .

zones=(a b c)
entries=()
for i in $(seq 1 "$n_engines"); do
  d="$state/node-$i"; addr="127.0.0.1:$((23750 + i))"
  mkdir -p "$d"; rm -f "$d/pid"
  echo "{\"deprecated-key-path\": \"$d/key.json\"}" > "$d/daemon.json"
  setsid unshare --uts sh -c "hostname node-$i; exec dockerd --config-file $d/daemon.json \
    --data-root $d/data --exec-root $d/exec --pidfile $d/pid -H tcp://$addr -H unix://$d/sock \
    --bridge=none --iptables=false --ip6tables=false --shutdown-timeout 2 \
    --label zone=${zones[$(( (i - 1) % 3 ))]} --label node-index=$i" >"$d/log" 2>&1 &
  pids+=("$!")
  entries+=("$addr")
done
for i in $(seq 1 "$n_engines"); do
  addr="127.0.0.1:$((23750 + i))"
  for _ in $(seq 1 120); do docker -H "tcp://$addr" version >/dev/null 2>&1 && break; sleep 0.5; done
  docker -H "tcp://$addr" import -c 'CMD ["/bin/sh"]' "$state/busybox.tar" busybox:latest >/dev/null
  echo "engine node-$i ready at $addr"
done

managers=()
for k in 0 1 2; do managers+=("127.0.0.1:$((port + k))"); done
peers=$(IFS=,; echo "${managers[*]}")
# The managers' shared secret (only they may speak Raft), and the join token derived from it.
secret="$state/cluster-secret"; token="$state/join-token"
[ -s "$secret" ] || (umask 077 && ./target/release/swarm create >"$secret")
(umask 077 && ./target/release/swarm join-token --cluster-secret-file "$secret" >"$token")
export SWARM_CLUSTER_SECRET_FILE="$secret" SWARM_JOIN_TOKEN_FILE="$token"
for k in 0 1 2; do
  # Restarted a second after it exits; manager-K.pid always names the running process. Once
  # its data dir holds the group, a manager restarts without --replication-peers: the group's
  # members may have changed since (swarm members add/remove).
  setsid bash -c 'while :; do
      peers=(--replication-peers "$2"); [ -s "$3/raft/log" ] && peers=()
      ./target/release/swarm manage -H "$1" --replication --advertise "$1" \
        "${peers[@]}" --data-dir "$3" "swarm://$2" >>"$4" 2>&1 &
      echo $! >"$5"; wait $!; sleep 1
    done' supervise "${managers[$k]}" "$peers" "$state/manager-$k" "$state/manager-$k.log" "$state/manager-$k.pid" &
  pids+=("$!")
done
for e in "${entries[@]}"; do
  ./target/release/swarm join --advertise "$e" --heartbeat 5s --ttl 20s "swarm://$peers" >"$state/join-${e##*:}.log" 2>&1 &
  pids+=("$!")
done
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/_ping" >/dev/null && break; sleep 0.1; done
# HAProxy in front of the three managers: a dead one leaves the pool within about a second.
SWARM_LB="127.0.0.1:$lb_port" SWARM_LB_METRICS="127.0.0.1:$lb_metrics_port" SWARM_M1="${managers[0]}" SWARM_M2="${managers[1]}" SWARM_M3="${managers[2]}" \
  haproxy -f haproxy/haproxy.cfg -db >"$state/haproxy.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$lb_port/_ping" >/dev/null && break; sleep 0.1; done
if ! curl -sf "http://127.0.0.1:$lb_port/_ping" >/dev/null; then
  echo "HAProxy does not answer on 127.0.0.1:$lb_port (port taken? set SWARM_LB_PORT); see $state/haproxy.log" >&2
  exit 1
fi
for _ in $(seq 1 100); do
  [ "$(./target/release/swarm list --timeout 2s "swarm://$peers" 2>/dev/null | wc -l)" -ge "$n_engines" ] && break; sleep 0.2
done
cat <<MSG

The cluster is up: ${n_engines} engines, three managers on embedded Raft at $peers
(logs and Raft data: $state/manager-*), behind HAProxy at 127.0.0.1:$lb_port. Any manager
serves the Docker API; followers pass requests to the primary. Use it from another shell:

    export DOCKER_HOST=tcp://127.0.0.1:$lb_port
    docker info                       # every node, and the manager that answered
    docker run -d --name web busybox httpd -f -p 8080
    ./target/release/swarm members list --manager 127.0.0.1:$port --cluster-secret-file $secret

Kill the current leader (SIGKILL, by its pid) while docker runs, and see no error: the
manager comes back a second later, and any other can be killed next.

    while :; do docker run -d --network none busybox true >/dev/null && echo ok; sleep 0.1; done &
    for k in 0 1 2; do curl -s 127.0.0.1:\$(($port + k))/info | grep -q '\["Role","primary"\]' && kill -9 \$(cat $state/manager-\$k.pid); done
    sleep 3; kill %1

Metrics: curl http://127.0.0.1:$port/metrics (each manager), http://127.0.0.1:$lb_metrics_port/metrics (HAProxy);
Prometheus with grafana/prometheus.yml scrapes both and evaluates grafana/alerts.yml.
Press Ctrl-C to stop everything.
MSG
wait
