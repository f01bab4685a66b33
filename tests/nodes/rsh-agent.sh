#!/usr/bin/env bash
# Open MPI's remote-shell agent for the namespace "nodes" (netns.sh; given as
# --mca plm_rsh_agent): called like ssh, `rsh-agent.sh [options] HOST COMMAND...`,
# it runs COMMAND with sh in HOST's network, UTS and mount namespaces, in the
# caller's folder when the node has it. The holders'
# pids are in $NODES_DIR/ns-HOST.pid.
set -u
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done # ssh-style options (none expected)
host=${1:?rsh-agent.sh: no host}
shift
pidf=${NODES_DIR:?rsh-agent.sh: NODES_DIR is not set}/ns-$host.pid
[ -f "$pidf" ] || { echo "rsh-agent.sh: no node $host in $NODES_DIR" >&2; exit 255; }
exec nsenter -t "$(cat "$pidf")" -m -n -u -- /bin/sh -c "cd '$PWD' 2>/dev/null; $*"
