/* SIGINT and SIGTERM in the long commands (scan, index, train, run).
 *
 * cl_interrupt_install() sets handlers that only record the signal in a
 * volatile sig_atomic_t (nothing else happens in the handler); the work
 * loops look at it between units of work (a shard, a training step), save
 * what is finished, and return; the CLI then says how to resume and exits
 * with 128 + the signal (130 for SIGINT, 143 for SIGTERM). The SIGINT
 * handler is installed with SA_RESETHAND: a second Ctrl-C ends the process at
 * once. A second SIGTERM does not: under Slurm with mpirun a rank can get the
 * scheduler's SIGTERM twice (from slurmd and through mpirun), and still saves
 * its work (tests/slurm_sigterm_status.sh).
 *
 * Several ranks: under mpirun every rank gets the signal (Open MPI's mpirun
 * sends SIGTERM to each rank, then SIGKILL after odls_base_sigkill_timeout,
 * 1 s by default), but a signal may also reach only one rank (kill of one
 * pid, a scheduler). Loops without collectives (the scan's and the index's
 * shards) use a cl_par_stop: the rank that got a signal tells every other
 * rank once (a point-to-point message on a private communicator), each rank
 * polls for that message at its shard boundaries, and cl_par_stop_close
 * (collective) drains the messages and gives every rank the same answer.
 * Loops with a collective per step (train) agree on cl_interrupt_signal()
 * with an allreduce instead.
 */
#ifndef CORPUSLENS_PAR_INTERRUPT_H
#define CORPUSLENS_PAR_INTERRUPT_H

#include <mpi.h>

/* SIGINT and SIGTERM only record the signal from now on (idempotent). */
void cl_interrupt_install(void);

/* The first SIGINT or SIGTERM received since cl_interrupt_install, or 0. */
int cl_interrupt_signal(void);

/* "SIGINT", "SIGTERM", or "signal N". */
const char *cl_interrupt_name(int sig);

typedef struct {
    MPI_Comm comm; /* a duplicate of the caller's (MPI_COMM_NULL with one process) */
    int rank, size;
    int sig;       /* the signal this rank got or heard of; 0 = none */
    int told;      /* 1 after this rank sent its notices */
    int heard;     /* notices received */
    MPI_Request *req;
} cl_par_stop;

/* Collective over comm. 0, or -1 (out of memory, message in cl_last_error():
 * agree on it with cl_par_agree) and *s needs no close. */
int cl_par_stop_open(cl_par_stop *s, MPI_Comm comm);

/* Local, cheap (an MPI_Iprobe): the signal this rank got or another rank
 * reported, or 0. The first time this rank sees its own signal it tells the
 * others. */
int cl_par_stop_poll(cl_par_stop *s);

/* Collective: receives the notices still in flight, frees s, and returns on
 * every rank the same value: the largest signal any rank saw, or 0. */
int cl_par_stop_close(cl_par_stop *s);

#endif
