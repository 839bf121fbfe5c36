# A throwaway one-node Slurm cluster on localhost, for tests. Source it, then:
#   cluster_start DIR   munged + slurmctld + slurmd with all state, sockets and logs in DIR;
#                       exports SLURM_CONF so that sbatch/squeue/scontrol talk to it
#   cluster_stop        cancels its jobs, stops the daemons (by the pids it started)
#   cluster_logs        tails of the daemon logs (for a failure report)
# Needs root (slurmd runs jobs as their submitter) and the Debian packages slurmctld, slurmd,
# slurm-client and munge (tools/setup.sh installs them). No cgroups, no systemd, no accounting:
# proctrack/linuxproc and task/none work in a plain container.

cluster_dir=""
cluster_pids=()

# Waits up to $1 seconds for the command "${@:2}" to succeed; returns 1 on timeout.
wait_for() {
  local limit=$1 start=$SECONDS
  shift
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -ge "$limit" ] && return 1
    sleep 0.2
  done
}

# A TCP port nobody listens on (two daemons, so two calls).
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}

cluster_start() {
  cluster_dir=$1
  local missing=()
  for b in munged slurmctld slurmd sbatch scontrol squeue srun; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || missing+=("$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "cannot start a Slurm test cluster: ${missing[*]} not found; run tools/setup.sh" \
      "(it installs slurmctld slurmd slurm-client munge)" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "cannot start a Slurm test cluster: slurmd must run as root to start jobs (this is uid" \
      "$(id -u)); run the test as root (CI does) or in a root container" >&2
    return 1
  fi
  export PATH=$PATH:/usr/sbin
  mkdir -p "$cluster_dir"/{ctld,spool,munge} && chmod 700 "$cluster_dir/munge"
  local d=$cluster_dir
  # munge: a fresh key, our own socket (never the host's munged). --force accepts /tmp's mode.
  dd if=/dev/urandom of="$d/munge/key" bs=1024 count=1 status=none && chmod 400 "$d/munge/key"
  munged --force --foreground --socket="$d/munge/sock" --key-file="$d/munge/key" \
    --pid-file="$d/munge/pid" --log-file="$d/munge/log" --seed-file="$d/munge/seed" \
    >"$d/munge/out" 2>&1 &
  cluster_pids+=($!)
  wait_for 10 test -S "$d/munge/sock" || { echo "munged did not start" >&2; return 1; }

  local host ctld_port slurmd_port node
  host=$(hostname -s)
  ctld_port=$(free_port) && slurmd_port=$(free_port) || { echo "no free port" >&2; return 1; }
  # The node as slurmd sees the hardware (CPUs, sockets, cores, threads, RealMemory), so that
  # slurmd never drains it for having less than configured.
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
  cat >"$d/slurm.conf" <<EOF
ClusterName=autotptest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: how long a requeued job waits to start again (120 s by default).
AuthInfo=socket=$d/munge/sock,cred_expire=5
CredType=cred/munge
StateSaveLocation=$d/ctld
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobRequeue=1
ReturnToService=2
# Quick turnaround for a test: kill 5 s after SIGTERM, schedule pending jobs every second.
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=600
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$d/slurm.conf
  slurmctld -D -f "$SLURM_CONF" >"$d/slurmctld.out" 2>&1 &
  cluster_pids+=($!)
  slurmd -D -f "$SLURM_CONF" >"$d/slurmd.out" 2>&1 &
  cluster_pids+=($!)
  if ! wait_for 30 node_idle; then
    echo "the Slurm test node did not come up idle within 30 s:" >&2
    sinfo -N -l >&2 2>&1
    return 1
  fi
}

node_idle() { [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ]; }

cluster_logs() {
  local f
  for f in "$cluster_dir"/slurmctld.log "$cluster_dir"/slurmd.log "$cluster_dir"/munge/log; do
    [ -f "$f" ] && { echo "--- tail $f"; tail -25 "$f"; }
  done
}

cluster_stop() {
  [ -n "$cluster_dir" ] || return 0
  # Cancel its jobs first: slurmstepd and the job's processes outlive slurmd.
  if [ -n "${SLURM_CONF:-}" ] && [ ${#cluster_pids[@]} -gt 0 ]; then
    scancel --user=root >/dev/null 2>&1
    wait_for 15 no_jobs_running || echo "warning: jobs still running after scancel" >&2
  fi
  local p
  for p in "${cluster_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${cluster_pids[@]}"; do wait "$p" 2>/dev/null; done
  cluster_pids=()
}

no_jobs_running() { [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ]; }
