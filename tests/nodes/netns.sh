# Sourced by the two-node tests (nodes_mpi.sh, nodes_slurm.sh): "nodes" on one
# machine. Each node is a process holding a network, a UTS and a mount
# namespace of its own (hostname node1, node2, ...; the controller: ctl); every
# command "on" a node enters them (nsenter). A node's /tmp is its own (a
# tmpfs): node-local temporary folders, as on a cluster (Slurm's PMIx plugin
# and Open MPI put per-node files there under the same names); everything
# else, /var/tmp included, is the shared file system. So the tests keep their
# files under /var/tmp. The namespaces are joined by one veth pair per
# node whose other end is a port of a bridge in the controller's namespace,
# with addresses of $NODES_NET.0/24 (node k: .k, ctl: .254) that exist only in
# these namespaces: a node has no other interface than lo and cl0, so what
# its processes send to another node goes over cl0 (TCP between "hosts") and
# nothing leaves for the outside. /etc/hosts gets the names only while the
# test runs (lines tagged with this test's marker, removed by nodes_down).
# Usage: NODES_DIR=folder NODES_NET=10.213.26; nodes_check || exit 77;
# nodes_up node1 node2 [ctl]; on node1 CMD...; nodes_down (in the EXIT trap).
NODES_HOLDERS=()
NODES_MARK="# corpuslens-nodes-test $$"

# 0 when namespaces can be made here; else prints why (the caller skips)
nodes_check() {
    [ "$(id -u)" = 0 ] || { echo "needs root (namespaces, veth, /etc/hosts)"; return 1; }
    local b
    for b in ip unshare nsenter flock; do
        command -v $b >/dev/null || { echo "no $b"; return 1; }
    done
    unshare -m -n -u true 2>/dev/null ||
        { echo "cannot create mount, network and UTS namespaces (unshare -m -n -u: no CAP_SYS_ADMIN?)"; return 1; }
    # what nodes_up needs, tried in throwaway namespaces
    unshare -n sh -c 'ip link add cla type veth peer name clb' 2>/dev/null ||
        { echo "cannot create a veth pair in a network namespace"; return 1; }
    unshare -n sh -c 'ip link add clbr type bridge' 2>/dev/null || { echo "cannot create a bridge in a network namespace"; return 1; }
    unshare -m --propagation private sh -c 'mount -t tmpfs cl-check /tmp' 2>/dev/null ||
        { echo "cannot mount a tmpfs on /tmp in a mount namespace"; return 1; }
    [ -w /etc/hosts ] || { echo "/etc/hosts is not writable"; return 1; }
    if ip -o addr | grep -q " ${NODES_NET//./\\.}\."; then echo "$NODES_NET.0/24 is in use here"; return 1; fi
    return 0
}

nodes_pid() { cat "$NODES_DIR/ns-$1.pid"; }
# on NODE CMD...: run CMD in NODE's namespaces, in the current folder (a
# shared one: not below /tmp)
on() {
    local n=$1
    shift
    nsenter -t "$(nodes_pid "$n")" -m -n -u --wd="$PWD" -- "$@"
}
# on_bg NODE OUT CMD...: CMD in the background on NODE, output to OUT; its pid
# (the command's own: nsenter execs it) in NODES_BG
on_bg() {
    local n=$1 out=$2
    shift 2
    nsenter -t "$(nodes_pid "$n")" -m -n -u --wd="$PWD" -- "$@" </dev/null >"$out" 2>&1 7>&- 9>&- &
    NODES_BG=$!
}
# the holder of a node: its namespaces, its own /tmp, its hostname
nodes_holder() {
    unshare -m -n -u --propagation private \
        sh -c "mount -t tmpfs -o size=512m,mode=1777 cl-$1-tmp /tmp && hostname $1 && exec sleep 86400" \
        </dev/null >/dev/null 2>&1 7>&- 9>&- &
    NODES_HOLDERS+=($!)
    echo $! >"$NODES_DIR/ns-$1.pid"
}

nodes_up() {
    local n k=0 addr lines=""
    mkdir -p "$NODES_DIR"
    # one set of nodes at a time on this machine (the names node1/node2 in
    # /etc/hosts), whichever build tree runs it: held until this shell exits
    exec 7>/tmp/corpuslens-nodes.lock
    flock -w 1800 7 || { echo "another two-node test holds /tmp/corpuslens-nodes.lock"; return 1; }
    nodes_holder ctl # the controller's namespace holds the bridge
    for n in "$@"; do
        [ "$n" = ctl ] || nodes_holder "$n"
    done
    # each holder is up once its hostname is set (after its /tmp): wait for it
    for n in ctl "$@"; do
        for _ in $(seq 200); do
            [ "$(on "$n" hostname 2>/dev/null)" = "$n" ] && break
            sleep 0.05
        done
        [ "$(on "$n" hostname 2>/dev/null)" = "$n" ] || { echo "the namespace of $n did not come up"; return 1; }
    done
    on ctl sh -c "ip link set lo up && ip link add br0 type bridge && ip addr add $NODES_NET.254/24 dev br0 && ip link set br0 up" ||
        return 1
    lines="$NODES_NET.254 ctl $NODES_MARK"
    for n in "$@"; do
        [ "$n" = ctl ] && continue
        k=$((k + 1))
        addr=$NODES_NET.$k
        ip link add name cl0 netns "$(nodes_pid "$n")" type veth peer name p$k netns "$(nodes_pid ctl)" || return 1
        on ctl sh -c "ip link set p$k master br0 && ip link set p$k up" || return 1
        on "$n" sh -c "ip link set lo up && ip addr add $addr/24 dev cl0 && ip link set cl0 up" || return 1
        lines="$lines
$addr $n $NODES_MARK"
    done
    # /etc/hosts in place (it may be a bind mount), under a lock
    (flock 8 && printf '%s\n' "$lines" >>/etc/hosts) 8>/tmp/corpuslens-etc-hosts.lock || return 1
}

nodes_down() {
    local p n left
    trap '' INT TERM # not cut short: the lines in /etc/hosts must go
    # whatever still runs in the nodes (daemons, job steps, ranks: all this
    # test's), then the holders; the namespaces, with the veths and the
    # bridge, go with the last process in them
    for n in $(cd "$NODES_DIR" 2>/dev/null && ls ns-*.pid 2>/dev/null | sed 's/^ns-//; s/\.pid$//'); do
        left=$(nodes_in "$n")
        [ -n "$left" ] && kill -TERM $left 2>/dev/null
    done
    sleep 0.5
    for n in $(cd "$NODES_DIR" 2>/dev/null && ls ns-*.pid 2>/dev/null | sed 's/^ns-//; s/\.pid$//'); do
        left=$(nodes_in "$n")
        [ -n "$left" ] && kill -KILL $left 2>/dev/null
    done
    for p in "${NODES_HOLDERS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${NODES_HOLDERS[@]}"; do wait "$p" 2>/dev/null; done
    NODES_HOLDERS=()
    if grep -qF "$NODES_MARK" /etc/hosts 2>/dev/null; then
        (flock 8 && grep -vF "$NODES_MARK" /etc/hosts >"$NODES_DIR/hosts.new" && cat "$NODES_DIR/hosts.new" >/etc/hosts) \
            8>/tmp/corpuslens-etc-hosts.lock
    fi
}

# nodes_in NODE: the pids of the processes in NODE's network namespace (not its holder)
nodes_in() {
    local want p
    want=$(readlink "/proc/$(nodes_pid "$1")/ns/net" 2>/dev/null) || return 0
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" = "$(nodes_pid "$1")" ] && continue
        [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
    done
}
