#!/usr/bin/env bash
# Two nodes on one machine, through Open MPI (issue 26 item 3): node1 and node2
# are network + UTS namespaces joined over a veth pair each and a bridge
# (tests/nodes/netns.sh; addresses 10.213.26.0/24, only inside them; the names
# in /etc/hosts only while the test runs). mpirun runs on node1 and starts
# the ranks on both nodes through an rsh agent that enters the node's
# namespaces (tests/nodes/rsh-agent.sh as plm_rsh_agent), with
# --mca btl tcp,self and btl_tcp_if_include / oob_tcp_if_include cl0, so the
# ranks on different nodes talk TCP over the test link. Checks: the ranks
# report the hostnames node1 and node2; the demo pipeline (`run`: train,
# prepare, scan with --index-out (a held-out part), reduce, explain) on 2 ranks across the two nodes
# writes the same files as on 2 ranks of one node (the host, Open MPI's
# defaults): model.h5, corpus.h5 and the index byte for byte, scan.h5 once
# wall_seconds is 0 in copies of both, the report once the scan's SHA-256
# (which covers wall_seconds) is masked; node2's cl0 carried the traffic. Skips (77) where namespaces cannot be made.
# Env: CORPUSLENS, SRC (source tree), PYTHON (h5py), KEEP.
set -u
CL=${CORPUSLENS:?CORPUSLENS must name the binary}
SRC=${SRC:?SRC must name the source tree}
PY=${PYTHON:-/usr/bin/python3}
command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
D=$(mktemp -d /var/tmp/cl-nodes-mpi.XXXXXX)
# each node has a /tmp of its own (a tmpfs): a binary built under /tmp is copied
# where both nodes see it
case $(readlink -f "$CL") in /tmp/*) cp "$CL" "$D/corpuslens" && CL=$D/corpuslens ;; esac
chmod 755 "$D"
export NODES_DIR=$D/ns NODES_NET=${NODES_NET:-10.213.26}
. "$SRC/tests/nodes/netns.sh"
why=$(nodes_check) || { echo "SKIP: $why"; rm -rf "$D"; exit 77; }
cleanup() {
    local rc=$?
    trap '' INT TERM
    nodes_down
    if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }

nodes_up node1 node2 || { echo "FAIL: the nodes did not come up"; exit 1; }
ok "node1 and node2 up: $(on node1 ip -br addr show cl0 | tr -s ' ') / $(on node2 ip -br addr show cl0 | tr -s ' ')"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# a session folder of this test's own (ctest sets one per test; the nodes share it, each under its hostname)
export OMPI_MCA_orte_tmpdir_base=${OMPI_MCA_orte_tmpdir_base:-$D/ompi}
MPIRUN=(timeout -k 5 300 mpirun --host node1,node2 -n 2
        --mca plm_rsh_agent "$SRC/tests/nodes/rsh-agent.sh" --mca plm_rsh_no_tree_spawn 1
        --mca btl tcp,self --mca btl_tcp_if_include cl0 --mca oob_tcp_if_include cl0)

# ---- the ranks' hosts
hosts=$(cd "$D" && on node1 "${MPIRUN[@]}" sh -c 'echo "$OMPI_COMM_WORLD_RANK $(hostname)"' 2>"$D/hosts.err" | sort)
if [ "$hosts" = "0 node1
1 node2" ]; then ok "mpirun on node1 starts rank 0 on node1 and rank 1 on node2"
else bad "ranks' hosts: '$(echo $hosts)' (want '0 node1 1 node2'): $(tail -5 "$D/hosts.err")"; fi

# ---- the pipeline on two nodes and on one
cd "$D"
"$CL" demo-corpus --chars 30000 -o demo.txt >/dev/null || exit 1
cat >job.ini <<JOB
[corpus]
path = $D/demo.txt
len = 6
prompts = 40
seed = 1
holdout_fraction = 0.1
[train]
config = n_layer=2,n_embd=32,n_head=4,block_size=16
steps = 6
batch = 4
ctx = 8
eval_every = 2
seed = 3
[scan]
prefilter = 0.5
bin_width = 0.02
batch = 64
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = \${OUT}
JOB
export OUT=$D/job
# bytes node2 sent over cl0 (/proc/net/dev is the reader's network namespace's)
tx() { on node2 awk -F'[: ]+' '$2 == "cl0" { print $11 }' /proc/net/dev; }
tx0=$(tx)
on node1 "${MPIRUN[@]}" -x OUT "$CL" run job.ini >two.out 2>two.err || { bad "run on two nodes failed:"; tail -8 two.err; }
tx1=$(tx)
grep -q "2 ranks" two.out two.err && ok "run on two nodes: $(grep -ho 'corpuslens run [^:]*: 2 ranks[^,]*' two.out two.err | head -1)" ||
    bad "run on two nodes: no '2 ranks' line"
[ $((tx1 - tx0)) -gt 100000 ] && ok "node2's cl0 sent $(((tx1 - tx0) / 1024)) KiB during the run (TCP between the nodes)" ||
    bad "node2's cl0 sent only $((tx1 - tx0)) bytes"
mv job two
timeout -k 5 300 mpiexec -n 2 --oversubscribe "$CL" run job.ini >one.out 2>one.err || { bad "run on one node failed:"; tail -8 one.err; }
mv job one
n=0
while IFS= read -r f; do
    n=$((n + 1))
    case $f in
    scan.h5 | report/report.h5)
        # scan.h5: its wall_seconds; report.h5: scan_sha256, the SHA-256 of
        # scan.h5 (wall_seconds included), set alike in copies of both
        "$PY" -c "
import shutil, sys, h5py
for a in sys.argv[2:]:
    shutil.copyfile(a, a + '.w0')
    with h5py.File(a + '.w0', 'r+') as h:
        if sys.argv[1] == 'scan.h5': h.attrs.modify('wall_seconds', 0.0)
        else: h.attrs.modify('scan_sha256', '0' * 64)" "$f" "two/$f" "one/$f"
        cmp -s "two/$f.w0" "one/$f.w0" && ok "$f: the same on two nodes as on one (once $( [ $f = scan.h5 ] && echo wall_seconds || echo scan_sha256) is set alike)" ||
            bad "$f differs" ;;
    report/report.md)
        cmp -s <(sed 's/sha256 `[0-9a-f]*`/sha256/' "two/$f") <(sed 's/sha256 `[0-9a-f]*`/sha256/' "one/$f") &&
            ok "$f: the same on two nodes as on one but for scan.h5's SHA-256" || bad "$f differs" ;;
    *)
        cmp -s "two/$f" "one/$f" && ok "$f: the same bytes on two nodes as on one" || bad "$f differs" ;;
    esac
done < <(cd two && find . -type f \( -name '*.h5' -o -name '*.md' \) | sed 's|^\./||' | sort)
[ $n -ge 4 ] || bad "only $n output files compared"
[ -f two/index.h5 ] || bad "no index.h5 from the scan"
# negative control: cmp sees a one-byte change
cp one/model.h5 ctl.h5 && printf 'x' | dd of=ctl.h5 bs=1 seek=$(($(stat -c %s ctl.h5) / 2)) conv=notrunc 2>/dev/null
cmp -s one/model.h5 ctl.h5 && bad "control: cmp missed a changed byte" || ok "control: cmp sees one changed byte"
if [ $fails -gt 0 ]; then echo "$fails failed"; exit 1; fi
echo "all passed"
