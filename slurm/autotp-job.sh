# Sourced by the slurm/*.sbatch scripts (not an sbatch script itself): runs autotp-train as one
# job step and turns its "checkpoint written, requeue me" exit into `scontrol requeue`.
#
# The preemption path: Slurm sends SIGUSR1 (--signal=USR1@120, or `scancel --signal=USR1 JOB`)
# to the ranks -> at the next step boundary every rank agrees, autotp-train writes a checkpoint
# to $AUTOTP_SAVE_DIR and every rank exits 75 -> srun exits 75 -> this script requeues the job
# -> Slurm starts the same script again (same job id, SLURM_RESTART_COUNT=1, 2, ...) -> --resume
# continues from the newest checkpoint. On the first run there is none and --resume does
# nothing, so every run has the same command line.
#
# Environment (all optional):
#   AUTOTP_HOME      the autotp checkout (default: the directory sbatch was run from)
#   AUTOTP_TRAIN     the binary (default: $AUTOTP_HOME/build/app/autotp-train)
#   AUTOTP_OUT_DIR   --out_dir (default: autotp_run-$SLURM_JOB_ID, kept across requeues)
#   AUTOTP_SAVE_DIR  --save_dir (default: $AUTOTP_OUT_DIR/checkpoints); point a new job at an
#                    old job's directory to continue it
#   AUTOTP_SRUN_MPI  srun's --mpi plugin (default pmix: Open MPI 4/5 over PMIx; `srun --mpi=list`)

autotp_home=${AUTOTP_HOME:-$SLURM_SUBMIT_DIR}
autotp_train=${AUTOTP_TRAIN:-$autotp_home/build/app/autotp-train}
export AUTOTP_OUT_DIR=${AUTOTP_OUT_DIR:-autotp_run-$SLURM_JOB_ID}
export AUTOTP_SAVE_DIR=${AUTOTP_SAVE_DIR:-$AUTOTP_OUT_DIR/checkpoints}
# autotp-train reads share/ and configs/ from the source tree it was built from; a binary
# copied elsewhere finds them here.
export AUTOTP_SHARE_DIR=${AUTOTP_SHARE_DIR:-$autotp_home/share}
export AUTOTP_CONFIGS_DIR=${AUTOTP_CONFIGS_DIR:-$autotp_home/configs}
# Since Slurm 22.05 srun no longer inherits sbatch's --cpus-per-task.
[ -n "${SLURM_CPUS_PER_TASK:-}" ] && export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK

# autotp_run ARGS...: srun autotp-train ARGS on every task of the allocation; exits the script.
autotp_run() {
  if [ ! -x "$autotp_train" ]; then
    echo "autotp: $autotp_train is not an executable: build autotp (tools/setup.sh), submit" \
      "from the checkout, or set AUTOTP_HOME / AUTOTP_TRAIN" >&2
    exit 1
  fi
  echo "autotp: job $SLURM_JOB_ID run $((${SLURM_RESTART_COUNT:-0} + 1)) on" \
    "$SLURM_JOB_NODELIST ($SLURM_NTASKS tasks), $(date -u '+%F %T') UTC"
  echo "autotp: out_dir $AUTOTP_OUT_DIR, checkpoints $AUTOTP_SAVE_DIR"
  # The ranks get the signals themselves (Slurm signals every task of the step). SIGUSR1 means
  # "checkpoint and requeue". A SIGUSR1 sent to the batch shell only (--signal=B:USR1@120,
  # `scancel --batch`) is passed on: srun forwards it to every task. SIGTERM reaches the shell
  # too when the job is cancelled, preempted or at its time limit: the ranks checkpoint, the
  # shell outlives them (bash would die of it) and does not requeue -- a cancelled job stays
  # cancelled, and a preempted one is requeued by Slurm itself (PreemptMode=REQUEUE).
  local pid="" rc terminated=0
  trap 'terminated=1
        echo "autotp: batch shell got SIGTERM; waiting for the ranks to checkpoint"' TERM
  trap 'echo "autotp: batch shell got SIGUSR1; forwarding it to the ranks"
        [ -n "$pid" ] && kill -USR1 "$pid"' USR1
  # No --kill-on-bad-exit: 75 is a non-zero exit, and the ranks leaving a moment apart after a
  # checkpoint must not be killed. A failing rank ends the job through MPI_Abort instead.
  srun --mpi="${AUTOTP_SRUN_MPI:-pmix}" "$autotp_train" --out_dir "$AUTOTP_OUT_DIR" \
    --save_dir "$AUTOTP_SAVE_DIR" --resume "$@" &
  pid=$!
  # A trapped signal interrupts `wait` (status > 128); wait again until srun has ended.
  while :; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  if [ "$rc" -eq 75 ] && [ "$terminated" -eq 1 ]; then
    echo "autotp: checkpoint written; not requeueing after SIGTERM (cancelled, preempted or" \
      "out of time); resubmit with AUTOTP_SAVE_DIR=$AUTOTP_SAVE_DIR to continue"
    exit 75
  fi
  if [ "$rc" -eq 75 ]; then  # kExitRequeue (lib/train/stop_signal.hpp)
    echo "autotp: checkpoint written; requeueing job $SLURM_JOB_ID, $(date -u '+%T') UTC"
    # Ends this shell as well; Slurm restarts the script after AuthInfo's cred_expire (120 s).
    scontrol requeue "$SLURM_JOB_ID" && exit 0
    echo "autotp: requeue failed (is JobRequeue or --requeue off?); resubmit to resume" >&2
    exit 75
  fi
  echo "autotp: srun exited $rc"
  exit "$rc"
}
