#!/usr/bin/env bash
# slurm/autotp-cpu.sbatch on a real one-node Slurm cluster (started here on localhost, torn
# down at the end even on failure): a job that is signalled twice -- SIGUSR1 to the ranks, as
# `--signal=USR1@60` does, then SIGUSR1 to the batch shell only, which forwards it -- must
# checkpoint, requeue itself, resume, and end with the very loss of an uninterrupted job (same
# topology on the CPU backend: bit for bit). A job cancelled with scancel checkpoints and stays
# cancelled.
# usage: test_slurm.sh SOURCE_DIR AUTOTP_TRAIN WORK_DIR
set -u
src=$1
train=$2
work=$3
steps=${AUTOTP_SLURM_TEST_STEPS:-40}
# Small and quick: 4 ranks (TP 2 x DP 2) share the cores; 0.15-0.4 s a step on two cores.
args=(--num_steps "$steps" --seq_length 64 --save_interval 0)

source "$(dirname "$0")/cluster.sh"
rm -rf "$work" && mkdir -p "$work"
tmp=$(mktemp -d /tmp/autotp-slurm.XXXXXX)
failures=0
ok() { echo "ok: $1"; }
bad() {
  failures=$((failures + 1))
  echo "FAILED: $1"
}
finish() {
  cluster_stop
  rm -rf "$tmp"
}
trap finish EXIT
trap 'exit 1' INT TERM
# A failure that makes the rest meaningless: report and stop.
fatal() {
  bad "$1"
  for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- tail $f"; tail -15 "$f"; }; done
  cluster_logs
  exit 1
}

t0=$SECONDS
cluster_start "$tmp" || fatal "the Slurm test cluster did not start (see above)"
ok "one-node cluster up in $((SECONDS - t0)) s ($(sinfo -h -N -o '%N %c CPUs %m MB'))"

# submit NAME [sbatch options]: the CPU script, from the checkout, output and run in $work.
submit() {
  local name=$1
  shift
  (cd "$src" && AUTOTP_TRAIN=$train AUTOTP_OUT_DIR=$work/$name sbatch --parsable \
    --job-name="$name" --output="$work/$name.out" "$@" slurm/autotp-cpu.sbatch "${args[@]}")
}
job_field() { scontrol show job "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | cut -d= -f2; }
job_ended() {
  case $(job_field "$1" JobState) in COMPLETED | FAILED | CANCELLED | TIMEOUT) ;; *) false ;; esac
}
restarts_are() { [ "$(job_field "$1" Restarts)" = "$2" ]; }
requeued_or_ended() { restarts_are "$1" "$2" || job_ended "$1"; }
# The steps that run number $2 of the job logged.
steps_logged() {
  awk -v r="$2" '/^autotp: job [0-9]+ run [0-9]+ / { run = $5 } run == r && /^step / { n++ }
                 END { print n + 0 }' "$work/$1.out" 2>/dev/null
}
logged_at_least() { [ "$(steps_logged "$1" "$2")" -ge "$3" ]; }
last_loss() {
  grep "^step *$steps/$steps | loss" "$work/$1.out" | tail -1 | sed 's/.*| loss \([^ ]*\).*/\1/'
}
metrics_loss() { tail -1 "$work/$1/metrics.jsonl" 2>/dev/null | sed 's/.*"loss":\([^,}]*\).*/\1/'; }

# 1. The reference: the job, not interrupted.
t0=$SECONDS
ref=$(submit reference) || fatal "sbatch refused the job"
wait_for 120 job_ended "$ref" || fatal "the reference job did not end within 120 s"
[ "$(job_field "$ref" JobState)" = COMPLETED ] && [ "$(job_field "$ref" ExitCode)" = 0:0 ] ||
  fatal "reference job: $(job_field "$ref" JobState), exit $(job_field "$ref" ExitCode)"
ref_loss=$(last_loss reference)
[ -n "$ref_loss" ] || fatal "the reference job logged no step $steps/$steps"
ok "reference job: $steps steps in $((SECONDS - t0)) s, final loss $ref_loss"

# 2. A cancelled job (`scancel JOB`: SIGTERM to the ranks and the batch shell) checkpoints and
# stays cancelled: the script must not requeue it.
job=$(submit cancelled) || fatal "sbatch refused the job"
wait_for 60 logged_at_least cancelled 1 3 || fatal "the job to cancel logged no 3 steps in 60 s"
scancel "$job"
wait_for 30 grep -q "^autotp: checkpoint written; .*requeue" "$work/cancelled.out" ||
  fatal "the cancelled job's script did not report a checkpoint within 30 s"
wait_for 30 job_ended "$job" && sleep 1
if grep -q "^autotp: checkpoint written; not requeueing after SIGTERM" "$work/cancelled.out" &&
  [ "$(job_field "$job" JobState)" = CANCELLED ] && restarts_are "$job" 0; then
  ok "scancel: SIGTERM -> checkpoint, job CANCELLED and not requeued"
else
  bad "scancel: $(job_field "$job" JobState), Restarts=$(job_field "$job" Restarts)"
fi
[ -n "$(ls -A "$work/cancelled/checkpoints" 2>/dev/null)" ] ||
  bad "the cancelled job left no checkpoint"
wait_for 30 no_jobs_running || fatal "the cancelled job's processes did not end within 30 s"

# 3. The interrupted job. Run 1: SIGUSR1 to every rank (scancel's default: all steps but not
# the batch shell, as --signal=USR1@60 does at the time limit).
t0=$SECONDS
job=$(submit preempted) || fatal "sbatch refused the job"
wait_for 60 logged_at_least preempted 1 5 || fatal "run 1 logged no 5 steps within 60 s"
scancel --signal=USR1 "$job"
wait_for 60 requeued_or_ended "$job" 1 && restarts_are "$job" 1 ||
  fatal "run 1 was not requeued within 60 s of SIGUSR1 (state $(job_field "$job" JobState))"
grep -q "^autotp: checkpoint written; requeueing job $job" "$work/preempted.out" &&
  ok "run 1: SIGUSR1 to the ranks -> checkpoint -> exit 75 -> requeued (Restarts=1)" ||
  bad "run 1 was requeued but its log lacks the exit-75 requeue line"
[ -n "$(ls -A "$work/preempted/checkpoints" 2>/dev/null)" ] && ok "checkpoint directory written" ||
  bad "no checkpoint in $work/preempted/checkpoints"
run1=$(steps_logged preempted 1)

# Run 2: SIGUSR1 to the batch shell only (--signal=B:USR1, `scancel --batch`); it forwards it.
wait_for 90 logged_at_least preempted 2 5 || fatal "run 2 logged no 5 steps within 90 s"
scancel --batch --signal=USR1 "$job"
wait_for 60 requeued_or_ended "$job" 2 && restarts_are "$job" 2 ||
  fatal "run 2 was not requeued within 60 s of SIGUSR1 to the batch shell"
grep -q "^autotp: batch shell got SIGUSR1; forwarding" "$work/preempted.out" &&
  ok "run 2: SIGUSR1 to the batch shell -> forwarded -> checkpoint -> requeued (Restarts=2)" ||
  bad "run 2 was requeued without the batch shell's forwarding line"
run2=$(steps_logged preempted 2)

# Run 3 resumes and finishes.
wait_for 120 job_ended "$job" || fatal "run 3 did not end within 120 s"
state=$(job_field "$job" JobState) code=$(job_field "$job" ExitCode)
[ "$state" = COMPLETED ] && [ "$code" = 0:0 ] &&
  ok "run 3 completed ($((SECONDS - t0)) s for the 3 runs)" ||
  fatal "run 3: $state, exit $code"
run3=$(steps_logged preempted 3)
# Each run resumes where the previous one checkpointed: the steps add up with none repeated.
if [ "$run1" -ge 5 ] && [ "$run2" -ge 5 ] && [ "$run3" -ge 1 ] &&
  [ $((run1 + run2 + run3)) -eq "$steps" ]; then
  ok "runs logged $run1 + $run2 + $run3 = $steps steps"
else
  bad "runs logged $run1 + $run2 + $run3 steps, not $steps"
fi
loss=$(last_loss preempted)
[ "$loss" = "$ref_loss" ] && ok "final loss $loss = the uninterrupted job's" ||
  bad "final loss '$loss' differs from the uninterrupted job's $ref_loss"
m_ref=$(metrics_loss reference) m_job=$(metrics_loss preempted)
[ -n "$m_ref" ] && [ "$m_job" = "$m_ref" ] &&
  ok "metrics.jsonl final loss $m_job matches" ||
  bad "metrics.jsonl final loss '$m_job' vs the uninterrupted job's '$m_ref'"

[ $failures -eq 0 ] || { cluster_logs; echo "$failures check(s) FAILED"; exit 1; }
echo "all Slurm checks passed"
