#!/bin/bash
# One simulated cluster node, run inside unroot as its command (uid 0 in the
# user namespace, the node's own network namespace). It builds what
# flannel's vxlan backend and a bridge CNI plugin build on a Kubernetes
# node, with fixed values instead of a lease in etcd:
#   flannel.1  vxlan id 1, UDP 8472, no learning, MAC 0a:16:00:00:00:0N,
#              10.244.N.0/32; for every other node M a route to
#              10.244.M.0/24 via 10.244.M.0 onlink, a permanent neighbour
#              10.244.M.0 -> M's VTEP MAC and an FDB entry M's MAC -> the
#              host address of M;
#   cni0       a bridge, 10.244.N.1/24, with two pods (network namespaces
#              held by a sleep named pod-N-P) at 10.244.N.P, P = 2, 3;
# then runs an etcd member advertising the host address and the published
# ports, and writes $DIR/ready. Environment: NODE (1..3), HOSTS (the host
# addresses, space separated, in node order), DIR (writable, kept across
# restarts), MTU (of the pod network).
set -euo pipefail
: "${NODE:?}" "${HOSTS:?}" "${DIR:?}" "${MTU:=1450}" "${ETCD:=1}"
read -r -a hosts <<<"$HOSTS"
self=${hosts[NODE-1]}
mac() { printf '0a:16:00:00:00:%02x' "$1"; }

echo 1 >/proc/sys/net/ipv4/ip_forward
ip link add flannel.1 type vxlan id 1 dstport 8472 nolearning
ip link set flannel.1 address "$(mac "$NODE")" mtu "$MTU"
ip addr add "10.244.$NODE.0/32" dev flannel.1
ip link set flannel.1 up
for m in "${!hosts[@]}"; do
  m=$((m + 1))
  [ "$m" = "$NODE" ] && continue
  ip route add "10.244.$m.0/24" via "10.244.$m.0" dev flannel.1 onlink
  ip neigh replace "10.244.$m.0" lladdr "$(mac "$m")" dev flannel.1 nud permanent
  bridge fdb append "$(mac "$m")" dev flannel.1 dst "${hosts[m-1]}" self permanent
done

ip link add cni0 type bridge
ip link set cni0 mtu "$MTU"
ip addr add "10.244.$NODE.1/24" dev cni0
ip link set cni0 up
for p in 2 3; do
  unshare --net bash -c "exec -a pod-$NODE-$p sleep infinity" &
  pid=$!
  # Named once unshare is done and bash has exec'd sleep; the test and the
  # bench find the pod by that name.
  until grep -qa "^pod-$NODE-$p" "/proc/$pid/cmdline"; do sleep 0.01; done
  ip link add "veth$p" mtu "$MTU" type veth peer name eth0 mtu "$MTU" netns "$pid"
  ip link set "veth$p" master cni0 up
  nsenter -t "$pid" -n sh -ec "
    ip link set lo up
    ip addr add 10.244.$NODE.$p/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.244.$NODE.1"
done

if [ "$ETCD" = 0 ]; then
  touch "$DIR/ready"
  wait
  exit
fi
cluster=
for m in "${!hosts[@]}"; do
  cluster+="${cluster:+,}n$((m + 1))=http://${hosts[m]}:2380"
done
etcd --name "n$NODE" --data-dir "$DIR/etcd" \
  --listen-peer-urls http://0.0.0.0:2380 --listen-client-urls http://0.0.0.0:2379 \
  --initial-advertise-peer-urls "http://$self:2380" --advertise-client-urls "http://$self:2379" \
  --initial-cluster "$cluster" --initial-cluster-token unroot-cluster-test --initial-cluster-state new \
  --heartbeat-interval 100 --election-timeout 1000 >"$DIR/etcd.log" 2>&1 &
touch "$DIR/ready"
wait
