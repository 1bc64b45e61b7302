#!/usr/bin/env bash
# A private, throw-away two-node Slurm cluster for the slurm tests: brings it up, runs a command
# inside it, and always tears it down again.
#
#   tests/slurm/cluster.sh COMMAND [ARG...]
#
# Starts, as root and without systemd, in a fresh temporary folder (/tmp/offnas_slurm.XXXXXX):
# one munged (own key and socket), one slurmctld and two slurmd for the virtual nodes n1 and n2
# (2 CPUs each, both on this host, Debian's slurmd is built with MULTIPLE_SLURMD; node features
# `board` on n1 and `xeon` on n2, two device classes for --constraint), on three free TCP ports
# picked at random. Waits until both nodes are idle, then runs COMMAND with
#   SLURM_CONF          the cluster's slurm.conf (sbatch, squeue, scontrol, ... use it)
#   OFFNAS_SLURM_DIR    the cluster's folder (logs: ctld.log, n1.log, n2.log, munged.log)
# exported, and exits with COMMAND's status. On exit (also on error or a signal) it cancels
# every job of the cluster, shuts the daemons down and ends munged: only the processes it
# started, by PID. Set OFFNAS_SLURM_KEEP=1 to keep the folder (logs) afterwards;
# OFFNAS_SLURM_DEBUG=LEVEL (e.g. debug2) sets SlurmctldDebug and SlurmdDebug (default info) and
# OFFNAS_SLURM_DEBUGFLAGS=FLAGS (e.g. Steps) sets DebugFlags.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: tests/slurm/cluster.sh COMMAND [ARG...]" >&2
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "cluster.sh: must run as root (the private slurmd runs jobs as root)" >&2
  exit 1
fi
for tool in munged mungekey slurmctld slurmd sbatch scontrol sinfo squeue scancel; do
  if ! command -v "$tool" >/dev/null; then
    echo "cluster.sh: $tool not found (tests/deps installs slurmctld slurmd slurm-client munge)" >&2
    exit 1
  fi
done

dir=$(mktemp -d /tmp/offnas_slurm.XXXXXX)
chmod 755 "$dir" # munged refuses a socket folder others cannot traverse
pids=()          # daemons this script started: munged, slurmctld, slurmd n1, slurmd n2
conf=$dir/slurm.conf

log() { printf 'cluster.sh: %s\n' "$*" >&2; }

alive() { kill -0 "$1" 2>/dev/null; }

# wait_gone SECONDS PID...: true when all PIDs have exited within SECONDS.
wait_gone() {
  local deadline=$((SECONDS + $1)) pid
  shift
  for pid in "$@"; do
    while alive "$pid"; do
      ((SECONDS < deadline)) || return 1
      sleep 0.1
    done
  done
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ ${#pids[@]} -gt 1 ]] && alive "${pids[1]}"; then
    # jobs first: slurmstepd outlives slurmd, so a running job must end before the daemons
    local jobs
    jobs=$(SLURM_CONF=$conf squeue -h -o %A 2>/dev/null)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086 # one job id per word
      SLURM_CONF=$conf scancel $jobs 2>/dev/null
      local deadline=$((SECONDS + 15))
      while [[ -n $(SLURM_CONF=$conf squeue -h -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do
        sleep 0.2
      done
    fi
    SLURM_CONF=$conf scontrol shutdown >/dev/null 2>&1
  fi
  # the Slurm daemons (indices 1..), then munged (index 0), each by its PID
  local i
  for ((i = ${#pids[@]} - 1; i >= 1; i--)); do
    wait_gone 10 "${pids[i]}" || { log "slurm daemon ${pids[i]} still up, sending TERM"; kill "${pids[i]}"; }
  done
  for ((i = ${#pids[@]} - 1; i >= 1; i--)); do
    wait_gone 5 "${pids[i]}" || { log "slurm daemon ${pids[i]} still up, sending KILL"; kill -KILL "${pids[i]}"; }
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill "${pids[0]}" 2>/dev/null
    wait_gone 5 "${pids[0]}" || kill -KILL "${pids[0]}" 2>/dev/null
  fi
  # job processes the daemons left behind (an srun whose step never completed outlives its
  # slurmstepd): ours are exactly those whose environment names this cluster's slurm.conf
  local env_file p
  unset SLURM_CONF # so the helpers of this loop are not among them
  for env_file in /proc/[0-9]*/environ; do
    p=${env_file#/proc/}
    p=${p%/environ}
    [[ $p == "$$" ]] && continue
    if tr '\0' '\n' 2>/dev/null <"$env_file" | grep -qx "SLURM_CONF=$conf"; then
      log "ending leftover job process $p ($(tr '\0' ' ' 2>/dev/null </proc/"$p"/cmdline | head -c 80))"
      kill -KILL "$p" 2>/dev/null
    fi
  done
  wait 2>/dev/null
  if [[ ${OFFNAS_SLURM_KEEP:-0} == 1 ]]; then
    log "kept $dir"
  else
    rm -rf "$dir"
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# three free TCP ports in a row: slurmctld, slurmd n1, slurmd n2
# (free: nothing accepts a connection on it; bash's /dev/tcp, so no iproute2 needed)
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if port_free "$p" && port_free $((p + 1)) && port_free $((p + 2)); then
    base=$p
    break
  fi
done
[[ -n $base ]] || { log "no three free ports found"; exit 1; }

# ---- munge ------------------------------------------------------------------------------
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/tmp"
chmod 755 "$dir/munge"
mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null \
  || mungekey -c -k "$dir/munge/munge.key"
chmod 600 "$dir/munge/munge.key"
munged -F --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munged.log" \
  --seed-file="$dir/munge/munge.seed" >/dev/null 2>&1 &
pids+=($!)
deadline=$((SECONDS + 10))
until [[ -S $dir/munge/munge.socket ]]; do
  alive "${pids[0]}" || { log "munged exited: $(tail -n 3 "$dir/munged.log" 2>/dev/null)"; exit 1; }
  ((SECONDS < deadline)) || { log "munged socket did not appear"; exit 1; }
  sleep 0.05
done

# ---- slurm.conf -------------------------------------------------------------------------
# TaskProlog: Open MPI's shared-memory segments of the two virtual nodes would collide (same
# host, same session folder): each node gets its own backing folder.
cat >"$dir/taskprolog.sh" <<EOF
#!/bin/sh
mkdir -p "$dir/tmp/\$SLURMD_NODENAME/vader"
echo "export OMPI_MCA_btl_vader_backing_directory=$dir/tmp/\$SLURMD_NODENAME/vader"
EOF
chmod 755 "$dir/taskprolog.sh"

host=$(hostname -s)
# cred_expire=5 (the minimum; default 120): a requeued job may start again only that long after
# its requeue. sched_interval=1 (default 60): the main scheduler, not an event, starts a
# requeued job once it is eligible again.
cat >"$conf" <<EOF
ClusterName=offnastest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
SlurmctldPort=$base
SlurmdPort=$((base + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/ctld.log
SlurmdLogFile=$dir/%n.log
SlurmctldDebug=${OFFNAS_SLURM_DEBUG:-info}
SlurmdDebug=${OFFNAS_SLURM_DEBUG:-info}
${OFFNAS_SLURM_DEBUGFLAGS:+DebugFlags=$OFFNAS_SLURM_DEBUGFLAGS}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,bf_hetjob_immediate,sched_interval=1
MpiDefault=pmix
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
TaskProlog=$dir/taskprolog.sh
KillWait=5
MinJobAge=600
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 1)) CPUs=2 Features=board State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((base + 2)) CPUs=2 Features=xeon State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
EOF
for n in n1 n2; do mkdir -p "$dir/spool/$n" "$dir/tmp/$n"; done
export SLURM_CONF=$conf OFFNAS_SLURM_DIR=$dir

# ---- daemons ----------------------------------------------------------------------------
slurmctld -D -i -f "$conf" >>"$dir/ctld.out" 2>&1 &
pids+=($!)
for n in n1 n2; do
  slurmd -D -f "$conf" -N "$n" >>"$dir/$n.out" 2>&1 &
  pids+=($!)
done

deadline=$((SECONDS + 30))
while :; do
  states=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | tr '\n' ' ')
  [[ $states == "n1 idle n2 idle " ]] && break
  for pid in "${pids[@]}"; do
    alive "$pid" || { log "a daemon exited during start-up; logs in $dir"; tail -n 5 "$dir"/*.log >&2; exit 1; }
  done
  if ((SECONDS >= deadline)); then
    log "nodes not idle after 30 s (sinfo: ${states:-nothing}); last log lines:"
    tail -n 5 "$dir"/*.log >&2
    exit 1
  fi
  sleep 0.1
done
log "up: nodes n1 n2 idle, ports $base-$((base + 2)), folder $dir"

set +e
"$@"
rc=$?
set -e
exit "$rc"
