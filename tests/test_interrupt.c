/* The signal handlers of the long commands (par/interrupt.h): a signal is
 * recorded, not acted on; a second SIGTERM is the same request (under Slurm
 * with mpirun a rank can get the scheduler's SIGTERM twice and must still save
 * its work), a second SIGINT ends the process. raise() runs the handler before
 * it returns, so the order is exact (a shell sending two signals back to back
 * may see them merged into one). Criterion runs each test in a process of its
 * own. */
#include <criterion/criterion.h>
#include <signal.h>

#include "corpuslens/par/interrupt.h"

Test(interrupt, sigterm_twice_is_recorded_once) {
    cl_interrupt_install();
    cr_assert_eq(cl_interrupt_signal(), 0);
    raise(SIGTERM);
    cr_assert_eq(cl_interrupt_signal(), SIGTERM);
    raise(SIGTERM); /* the old SA_RESETHAND handler ended the process here */
    raise(SIGTERM);
    cr_assert_eq(cl_interrupt_signal(), SIGTERM);
}

Test(interrupt, first_signal_wins) {
    cl_interrupt_install();
    raise(SIGTERM);
    raise(SIGINT); /* recorded: the handler is still there after a SIGTERM */
    cr_assert_eq(cl_interrupt_signal(), SIGTERM);
}

/* the control: a second Ctrl-C still ends the process at once */
Test(interrupt, sigint_twice_ends, .signal = SIGINT) {
    cl_interrupt_install();
    raise(SIGINT);
    cr_assert_eq(cl_interrupt_signal(), SIGINT);
    raise(SIGINT);
    cr_assert_fail("still running after a second SIGINT");
}
