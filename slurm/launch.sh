# Sourced by the sbatch scripts (not a job of its own). cl_launch NAME ARGS...
# runs `$CL ARGS...` on the job's SLURM_NTASKS ranks and returns its exit status:
#  - one rank: the binary itself, without a launcher. A command on one process
#    does not start MPI (src/cli/mpi_start.c), and nothing of Open MPI starts
#    either (no mpirun daemons, no session directory): one-rank jobs that
#    start together on one node (a job array of one-rank trainings) raced on
#    Open MPI's session directory ("mkdir .../ompi.HOST.UID: File exists").
#  - several: srun --mpi=$CORPUSLENS_SRUN_MPI (default pmix) or mpirun
#    (CORPUSLENS_LAUNCH), with an Open MPI session directory of the job's own:
#    OMPI_MCA_orte_tmpdir_base set to a folder under the inherited one (else
#    TMPDIR, else /tmp) named after SLURM_JOB_ID, SLURM_ARRAY_TASK_ID and the
#    restart count, created before the launch and removed after it. When the
#    launch fails (a rank killed, a node lost), one line says so and that a
#    resubmission resumes.
#  - SIGTERM (scancel --signal=TERM, sbatch --signal=TERM@T before the time
#    limit, a preemption's grace time): the ranks save their work and exit 143.
#    With CL_REQUEUE_EXIT set (scan, train, alternatives: 3, Slurm's
#    RequeueExit=3), that status becomes CL_REQUEUE_EXIT, so that the job is
#    requeued and resumes, as after a stop at a checkpoint. The shell's own
#    SIGTERM is trapped (the launch runs to its end): a trap that exits would
#    replace the ranks' status with 143.
cl_launch() {
    local name=$1 n=${SLURM_NTASKS:-1} rc=0
    shift
    case ${CORPUSLENS_LAUNCH:-srun} in
    srun | mpirun) ;;
    *) echo "$name: CORPUSLENS_LAUNCH must be srun or mpirun" >&2; return 2 ;;
    esac
    trap "echo '$name: SIGTERM: the ranks save their work and stop' >&2" TERM
    if [ "$n" = 1 ]; then
        "$CL" "$@" || rc=$?
        cl_requeue_status "$name" $rc
        return
    fi
    CL_OMPI_DIR=${OMPI_MCA_orte_tmpdir_base:-${TMPDIR:-/tmp}}/cl-ompi-${SLURM_JOB_ID:-$$}${SLURM_ARRAY_TASK_ID:+-task$SLURM_ARRAY_TASK_ID}-r${SLURM_RESTART_COUNT:-0}
    mkdir -p "$CL_OMPI_DIR" || { echo "$name: cannot create $CL_OMPI_DIR" >&2; return 1; }
    # removed however the script ends (scancel: SIGTERM, after the launcher)
    trap 'rm -rf "$CL_OMPI_DIR"' EXIT
    case ${CORPUSLENS_LAUNCH:-srun} in
    # --wait: the step ends at most CORPUSLENS_SRUN_WAIT (60) seconds after
    # its first task ended: a rank that dies no longer leaves the others
    # waiting in a collective until the time limit (srun's default). Not
    # --kill-on-bad-exit: ranks that stop together at a checkpoint (exit 3,
    # RequeueExit) would be killed a moment before their own exit, and srun
    # would return 128 + the signal instead of 3.
    srun) OMPI_MCA_orte_tmpdir_base=$CL_OMPI_DIR srun --wait="${CORPUSLENS_SRUN_WAIT:-60}" \
        --mpi="${CORPUSLENS_SRUN_MPI:-pmix}" "$CL" "$@" || rc=$? ;;
    mpirun) OMPI_MCA_orte_tmpdir_base=$CL_OMPI_DIR mpirun -n "$n" "$CL" "$@" || rc=$? ;;
    esac
    rm -rf "$CL_OMPI_DIR"
    if [ $rc = 143 ] && [ -n "${CL_REQUEUE_EXIT:-}" ]; then
        cl_requeue_status "$name" $rc
        return
    fi
    # a rank or a node lost (the launcher's own lines above say which): say what to do
    [ $rc = 0 ] || echo "$name: failed (exit $rc) on ${SLURM_JOB_NODELIST:-?}, ${n} ranks; resubmit (slurm/submit.sh, the same job file): finished stages are skipped and this one resumes from its checkpoint where it has one (on any number of nodes and ranks)" >&2
    return $rc
}

# cl_requeue_status NAME RC: returns RC, or CL_REQUEUE_EXIT (with one line
# saying why) when RC is 143 (stopped by SIGTERM, work saved) and it is set
cl_requeue_status() {
    if [ "$2" = 143 ] && [ -n "${CL_REQUEUE_EXIT:-}" ]; then
        echo "$1: stopped by SIGTERM with its work saved: exit $CL_REQUEUE_EXIT (RequeueExit=$CL_REQUEUE_EXIT requeues the job, which resumes; a resubmission resumes too)" >&2
        return "$CL_REQUEUE_EXIT"
    fi
    return "$2"
}
