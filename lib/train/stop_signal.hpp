#pragma once
// Preemption: Slurm sends SIGUSR1 (sbatch --signal=USR1@120) or SIGTERM (scancel, the end of
// the time limit) to some or all ranks. The handler only sets a flag; at the next step
// boundary every rank learns whether any rank got one (one all-reduce), the run writes a
// checkpoint and exits with kExitRequeue, which slurm/ scripts turn into `scontrol requeue`.
#include <mpi.h>

namespace autotp {

// EX_TEMPFAIL: "try again later" -- the job saved its state and wants to be requeued.
constexpr int kExitRequeue = 75;

// Installs the SIGUSR1 and SIGTERM handlers (idempotent).
void install_stop_handlers();
// The signal number this process received (0 = none).
int stop_signal_received();
// Collective over comm: true on every rank when any rank received a stop signal.
bool stop_requested(MPI_Comm comm);
// Forgets a received signal (tests run several trainings in one process).
void clear_stop_signal();

}  // namespace autotp
