#!/usr/bin/env bash
# A two-node Slurm cluster on one machine (issue 26 item 3): the namespaces of
# tests/nodes/netns.sh (node1, node2, and ctl for the controller; addresses
# 10.213.27.0/24 only inside them, names in /etc/hosts only while the test
# runs), slurmctld in ctl, one slurmd per node (`slurmd -N nodeK`, spool, pid
# and log files per node through %n), munged shared (its socket is a file).
# The demo pipeline (train, prepare, scan, reduce: tiny) through
# slurm/submit.sh:
#  1. with --nodes=1: the reference files;
#  2. with --nodes=2, rank 1 (on node2) killed at its 3rd scan shard
#     (CORPUSLENS_FAULT, a checkpoint after every shard): the scan job FAILS,
#     its log says which node and task died and that a resubmission resumes;
#  3. the same submission again (no fault): train and prepare are skipped, the
#     scan resumes from the checkpoint on node1 and node2, and every file equals
#     the one-node run's (scan.h5 once wall_seconds is 0 in copies of both, the
#     report once the scan's SHA-256, which covers wall_seconds, is masked).
# Skips (77) without Slurm, munge or namespaces. Stops exactly the daemons it
# started, by pid (trap). Env: CORPUSLENS, SRC, PYTHON (h5py), KEEP.
set -uo pipefail
CL=${CORPUSLENS:?CORPUSLENS must name the corpuslens binary}
SRC=${SRC:?SRC must name the source tree}
PY=${PYTHON:-/usr/bin/python3}
LIMIT=${SLURM_TEST_LIMIT_S:-600}
for b in slurmctld slurmd sbatch scontrol sinfo munged munge unmunge setpriv; do
    command -v "$b" >/dev/null || { echo "SKIP: $b is not installed (CORPUSLENS_WITH_SLURM=1 .ci/install-deps)"; exit 77; }
done
D=$(mktemp -d /var/tmp/cl-nodes-slurm.XXXXXX)
# each node has a /tmp of its own (a tmpfs): a binary built under /tmp is copied
# where both nodes see it
case $(readlink -f "$CL") in /tmp/*) cp "$CL" "$D/corpuslens" && CL=$D/corpuslens ;; esac
chmod 755 "$D"
export NODES_DIR=$D/ns NODES_NET=${NODES_NET:-10.213.27}
. "$SRC/tests/nodes/netns.sh"
why=$(nodes_check) || { echo "SKIP: $why"; rm -rf "$D"; exit 77; }
pids=()
cleanup() {
    local rc=$?
    trap '' INT TERM
    if [ ${#pids[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
        on node1 scancel --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 20); do [ -z "$(on node1 squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null
    done
    if [ "$rc" != 0 ]; then
        for f in "$D"/slurmctld.log "$D"/slurmd-*.log "$D"/job*/slurm/*.out; do
            [ -f "$f" ] && { echo "---- $f (tail)"; tail -15 "$f"; }
        done
    fi
    nodes_down
    if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
t0=$(date +%s)

nodes_up node1 node2 || { echo "FAIL: the nodes did not come up"; exit 1; }

# ---- munge: reuse a running munged, else start one (as the munge user) ----
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -f /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key || { echo "mungekey failed"; exit 1; }
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground --force </dev/null >"$D/munged.out" 2>&1 9>&- &
    pids+=($!)
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
on node2 sh -c 'munge -n | unmunge' >/dev/null 2>&1 || { echo "FAIL: munge does not answer inside node2"; exit 1; }

# ---- slurm.conf: the controller in ctl, node1 and node2 (own netns: fixed ports) ----
mkdir -p "$D/state"
export SLURM_CONF=$D/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=clnodes
SlurmctldHost=ctl($NODES_NET.254)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool-%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
MailProg=/bin/true
MinJobAge=3600
ReturnToService=2
DependencyParameters=kill_invalid_depend
SchedulerParameters=sched_interval=1
KillWait=5
SlurmdParameters=config_overrides
NodeName=node1 NodeAddr=$NODES_NET.1 CPUs=2 State=UNKNOWN
NodeName=node2 NodeAddr=$NODES_NET.2 CPUs=2 State=UNKNOWN
PartitionName=clnodes Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
CONF
on_bg ctl "$D/slurmctld.out" slurmctld -D -c -f "$SLURM_CONF"
pids+=($NODES_BG)
for n in node1 node2; do
    mkdir -p "$D/spool-$n"
    on_bg $n "$D/slurmd-$n.out" slurmd -D -N $n -f "$SLURM_CONF"
    pids+=($NODES_BG)
done
up=0
for _ in $(seq 150); do
    st=$(on node1 sinfo -h -N -o '%N %T' 2>/dev/null | sort | tr '\n' ' ')
    [[ $st =~ ^node1\ idle\ node2\ idle ]] && { up=1; break; }
    sleep 0.2
done
[ $up = 1 ] || { echo "FAIL: the nodes did not become idle ('$st')"; exit 1; }
ok "slurmctld on ctl, slurmd on node1 and node2: both idle after $(($(date +%s) - t0)) s"

# wait_jobs ID...: poll until every job has ended; prints "ID STATE EXIT NAME"
wait_jobs() {
    local deadline=$(($(date +%s) + LIMIT)) id line st all
    while :; do
        all=1
        for id in "$@"; do
            st=$(on node1 scontrol show job -o "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
            case $st in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) ;; *) all=0 ;; esac
        done
        [ $all = 1 ] && break
        [ "$(date +%s)" -gt $deadline ] && { echo "timeout after $LIMIT s" >&2; break; }
        sleep 0.5
    done
    for id in "$@"; do
        line=$(on node1 scontrol show job -o "$id")
        echo "$id $(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$line") $(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$line") $(sed -n 's/.*JobName=\([^ ]*\).*/\1/p' <<<"$line")"
    done
}
# submit NAME [submit.sh options]: submit.sh from node1, ids into $D/NAME.ids
submit() {
    local name=$1
    shift
    (cd "$D" && on node1 "$SRC/slurm/submit.sh" "$D/job.ini" "$@") >"$D/$name.out" 2>"$D/$name.err" ||
        { bad "$name: submit.sh failed: $(cat "$D/$name.err")"; return 1; }
    cut -d' ' -f2 "$D/$name.out" >"$D/$name.ids"
}

cd "$D"
"$CL" demo-corpus --chars 30000 -o demo.txt >/dev/null || exit 1
cat >job.ini <<JOB
[corpus]
path = $D/demo.txt
len = 6
prompts = 40
seed = 1
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
checkpoint_every = 0.000001
[reduce]
thresholds = 0.8, 0.8
weights = 1, 1
[output]
dir = \${CORPUSLENS_OUT}
[slurm]
train_ranks = 2
scan_ranks = 2
JOB
export CORPUSLENS_BIN=$CL CORPUSLENS_OUT=$D/job
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# srun ends a step 10 s after its first rank ended (slurm/launch.sh; default 60)
export CORPUSLENS_SRUN_WAIT=10
# the ranks' TCP (Open MPI's btl and out-of-band) on the test link only
export OMPI_MCA_btl_tcp_if_include=cl0 OMPI_MCA_oob_tcp_if_include=cl0

# ---- 1. one node
submit one --nodes=1 && wait_jobs $(cat one.ids) >one.states
while read -r id st ec name; do
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] || bad "one node: job $id ($name): $st exit $ec"
done <one.states
grep -q "on node[12], 2 ranks" job/slurm/scan-*.out && ok "one node: the pipeline completed, $(grep -ho 'cl-scan: job [0-9]* .*ranks' job/slurm/scan-*.out)" ||
    bad "one node: the scan log: $(grep -h cl-scan job/slurm/scan-*.out)"
mv job one

# ---- 2. two nodes, rank 1 killed in the scan
CORPUSLENS_FAULT=1:scan.shard@3:kill submit killed --nodes=2 && wait_jobs $(cat killed.ids) >killed.states
scan_id=$(sed -n 's/^scan //p' killed.out)
slog=job/slurm/scan-$scan_id.out
if grep -q "^$scan_id FAILED" killed.states; then ok "two nodes, killed: the scan job $scan_id FAILED"
else bad "two nodes, killed: the scan job: $(grep "^$scan_id" killed.states)"; fi
grep -q "on node\[1-2\], 2 ranks" "$slog" || bad "two nodes, killed: the scan did not run on node[1-2]: $(grep cl-scan "$slog")"
if grep -q "node2: task 1: Killed" "$slog" && grep -q "cl-scan: failed .*resubmit" "$slog"; then
    ok "two nodes, killed: the log says '$(grep -m1 'node2: task 1' "$slog")' and '$(grep -m1 'cl-scan: failed' "$slog" | cut -c1-120)...'"
else bad "two nodes, killed: no clear message in $slog:"; sed 's/^/      /' "$slog" | tail -8; fi
ls job/scan.h5.state/rank*.bin >/dev/null 2>&1 && ok "two nodes, killed: checkpoints kept: $(cd job/scan.h5.state && ls rank*.bin | tr '\n' ' ')" ||
    bad "two nodes, killed: no checkpoint in job/scan.h5.state"

# ---- 3. the same submission again: resumes, the same files as on one node
submit again --nodes=2 && wait_jobs $(cat again.ids) >again.states
while read -r id st ec name; do
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] || bad "two nodes, resubmitted: job $id ($name): $st exit $ec"
done <again.states
scan_id=$(sed -n 's/^scan //p' again.out)
slog=job/slurm/scan-$scan_id.out
grep -q "on node\[1-2\], 2 ranks" "$slog" && grep -q "resuming: [1-9][0-9]* of" "$slog" &&
    ok "two nodes, resubmitted: the scan on node[1-2] $(grep -o 'resuming: [^(]*' "$slog" | head -1)" ||
    bad "two nodes, resubmitted: the scan did not resume on node[1-2]: $(grep -h 'cl-scan\|resum' "$slog")"
for st in train prepare; do
    grep -qh "^== \[[0-9]/[0-9]\] $st: skipped" job/slurm/$st-"$(sed -n "s/^$st //p" again.out)".out ||
        bad "two nodes, resubmitted: $st not skipped"
done
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
        else: h.attrs.modify('scan_sha256', '0' * 64)" "$f" "job/$f" "one/$f"
        cmp -s "job/$f.w0" "one/$f.w0" &&
            ok "$f: the same on two nodes (killed, resumed) as on one (once $( [ $f = scan.h5 ] && echo wall_seconds || echo scan_sha256) is set alike)" ||
            bad "$f differs" ;;
    report/report.md)
        cmp -s <(sed 's/sha256 `[0-9a-f]*`/sha256/' "job/$f") <(sed 's/sha256 `[0-9a-f]*`/sha256/' "one/$f") &&
            ok "$f: the same on two nodes (killed, resumed) as on one but for scan.h5's SHA-256" || bad "$f differs" ;;
    *)
        cmp -s "job/$f" "one/$f" && ok "$f: the same bytes on two nodes (killed, resumed) as on one" || bad "$f differs" ;;
    esac
done < <(cd one && find . -type f \( -name '*.h5' -o -name '*.md' \) | sed 's|^\./||' | sort)
[ $n -ge 4 ] || bad "only $n output files compared"
echo "nodes_slurm: $(($(date +%s) - t0)) s"
if [ $fails -gt 0 ]; then echo "$fails failed"; exit 1; fi
echo "all passed"
