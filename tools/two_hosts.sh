#!/usr/bin/env bash
# Two simulated hosts on one machine: network namespaces fgA and fgB joined by a veth pair
# (10.77.0.1 and 10.77.0.2, addresses that exist only inside them), its rate set with tc tbf,
# and MPICH's hydra launching one rank in each through a launcher that enters a namespace
# instead of ssh. Root only. (What worked and why: shared/notes/two-hosts-netns.md.)
#
#   tools/two_hosts.sh up                  # namespaces, veth, addresses
#   tools/two_hosts.sh rate 1gbit|10gbit|none
#   tools/two_hosts.sh run CMD...          # CMD under mpiexec, rank 0 in fgA, rank 1 in fgB
#   tools/two_hosts.sh bytes               # veth0 bytes sent from each namespace so far
#   tools/two_hosts.sh down                # everything removed
#
# mpiexec runs inside fgA (a proxy in fgB cannot reach the root namespace), and UCX is told
# to use TCP on veth0 (UCX_TLS=tcp; "self,tcp" failed to connect with MPICH 5.0.2 here): by default it sees one machine and moves every byte through shared
# memory, and the link would carry nothing.
set -euo pipefail
A=fgA B=fgB
LAUNCHER=/tmp/fastgrad-two-hosts-ssh
VENV=${VENV:-$(dirname "$(dirname "$(command -v python)")")}

case "${1:-}" in
up)
    ip netns add $A
    ip netns add $B
    ip link add veth0 netns $A type veth peer name veth0 netns $B
    ip -n $A addr add 10.77.0.1/24 dev veth0
    ip -n $B addr add 10.77.0.2/24 dev veth0
    for n in $A $B; do ip -n $n link set lo up; ip -n $n link set veth0 up; done
    cat > $LAUNCHER <<'SH'
#!/bin/sh
# hydra calls: LAUNCHER [ssh flags] HOST "COMMAND LINE"; run it in HOST's namespace
while [ $# -gt 0 ]; do
  case "$1" in -x|-q|-T|-n) shift ;; -o|-p|-l|-i) shift 2 ;; *) break ;; esac
done
host=$1; shift
case "$host" in 10.77.0.1) ns=fgA ;; 10.77.0.2) ns=fgB ;; *) echo "unknown host $host" >&2; exit 255 ;; esac
exec ip netns exec "$ns" sh -c "$*"
SH
    chmod +x $LAUNCHER
    ;;
rate)
    for n in $A $B; do
        case "${2:?rate: 1gbit, 10gbit or none}" in
        none) ip netns exec $n tc qdisc del dev veth0 root 2>/dev/null || true ;;
        10gbit) ip netns exec $n tc qdisc replace dev veth0 root tbf rate 10gbit burst 128kb latency 5ms ;;
        *) ip netns exec $n tc qdisc replace dev veth0 root tbf rate "$2" burst 64kb latency 5ms ;;
        esac
    done
    ;;
run)
    shift
    exec timeout 600 ip netns exec $A "$VENV/bin/mpiexec" -launcher ssh -launcher-exec $LAUNCHER \
        -hosts 10.77.0.1,10.77.0.2 -n 2 -genv UCX_TLS tcp -genv UCX_NET_DEVICES veth0 \
        -genv OMP_NUM_THREADS 1 "$@"
    ;;
bytes)
    for n in $A $B; do echo "$n $(ip netns exec $n cat /sys/class/net/veth0/statistics/tx_bytes)"; done
    ;;
down)
    for n in $A $B; do
        for pid in $(ip netns pids $n 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del $n 2>/dev/null || true
    done
    rm -f $LAUNCHER
    ;;
*)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
