/* SIGINT / SIGTERM: a flag, and the ranks told of it (interrupt.h). */
#include "corpuslens/par/interrupt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpuslens/base/error.h"
#include "corpuslens/par/par.h"

static volatile sig_atomic_t got_signal;

static void on_signal(int sig) {
    if (!got_signal) got_signal = sig;
}

void cl_interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_RESETHAND; /* a second Ctrl-C ends the process */
    sigaction(SIGINT, &sa, NULL);
    /* SIGTERM stays recorded: under Slurm a rank may get it twice, from slurmd
       and again through mpirun, and must still save its work (SIGKILL follows
       when the scheduler's grace time is over) */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
}

int cl_interrupt_signal(void) { return got_signal; }

const char *cl_interrupt_name(int sig) {
    static char buf[32];
    if (sig == SIGINT) return "SIGINT";
    if (sig == SIGTERM) return "SIGTERM";
    snprintf(buf, sizeof buf, "signal %d", sig);
    return buf;
}

#define STOP_TAG 7301

int cl_par_stop_open(cl_par_stop *s, MPI_Comm comm) {
    memset(s, 0, sizeof *s);
    s->comm = MPI_COMM_NULL;
    s->size = 1;
    if (!cl_par_up()) return 0;
    MPI_Comm_rank(comm, &s->rank);
    MPI_Comm_size(comm, &s->size);
    if (s->size == 1) return 0;
    s->req = calloc((size_t)s->size, sizeof *s->req);
    int bad = s->req == NULL, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        free(s->req);
        s->req = NULL;
        return cl_error("out of memory for the interrupt notices");
    }
    MPI_Comm_dup(comm, &s->comm);
    return 0;
}

int cl_par_stop_poll(cl_par_stop *s) {
    int mine = cl_interrupt_signal();
    if (mine && !s->sig) s->sig = mine;
    if (s->comm == MPI_COMM_NULL) return s->sig;
    if (mine && !s->told) { /* tell every other rank, once */
        static int payload;
        payload = mine;
        for (int r = 0, k = 0; r < s->size; r++)
            if (r != s->rank) MPI_Isend(&payload, 1, MPI_INT, r, STOP_TAG, s->comm, &s->req[k++]);
        s->told = 1;
    }
    for (;;) {
        int flag = 0, v = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, STOP_TAG, s->comm, &flag, MPI_STATUS_IGNORE);
        if (!flag) break;
        MPI_Recv(&v, 1, MPI_INT, MPI_ANY_SOURCE, STOP_TAG, s->comm, MPI_STATUS_IGNORE);
        s->heard++;
        if (!s->sig) s->sig = v;
    }
    return s->sig;
}

int cl_par_stop_close(cl_par_stop *s) {
    if (s->comm == MPI_COMM_NULL) {
        int sig = s->sig; /* a signal after the last poll lets the work finish */
        free(s->req);
        memset(s, 0, sizeof *s);
        return sig;
    }
    /* every rank that told sent one notice to each other rank */
    int told = s->told, n_told = 0;
    MPI_Allreduce(&told, &n_told, 1, MPI_INT, MPI_SUM, s->comm);
    for (int k = s->heard; k < n_told - told; k++) {
        int v = 0;
        MPI_Recv(&v, 1, MPI_INT, MPI_ANY_SOURCE, STOP_TAG, s->comm, MPI_STATUS_IGNORE);
        if (!s->sig) s->sig = v;
    }
    if (told) MPI_Waitall(s->size - 1, s->req, MPI_STATUSES_IGNORE);
    int sig = s->sig, all = 0;
    MPI_Allreduce(&sig, &all, 1, MPI_INT, MPI_MAX, s->comm);
    MPI_Comm_free(&s->comm);
    free(s->req);
    memset(s, 0, sizeof *s);
    s->comm = MPI_COMM_NULL;
    return all;
}
