#!/usr/bin/env bash
# Start, stop and inspect a one-node Slurm cluster on this machine, for the
# end-to-end tests that submit real `sbatch` jobs. See docs/slurm-local.md.
#
# Usage:
#   scripts/slurm/local-cluster.sh start         # install (if needed) and start; no-op if up
#   scripts/slurm/local-cluster.sh stop [--clean] # stop daemons; --clean also removes the scratch dir
#   scripts/slurm/local-cluster.sh status        # say whether the cluster is up
#   scripts/slurm/local-cluster.sh env           # eval "$(scripts/slurm/local-cluster.sh env)"
#
# Environment:
#   BLINDSPOT_SLURM_DIR   scratch dir for slurm.conf, state, spool, logs, pid files
#                         (default /tmp/blindspot-slurm)
#   BLINDSPOT_SLURM_WAIT  seconds `start` waits for the node to become idle (default 60)
#
# Exit codes:
#   0  success (`status`: cluster is up)
#   1  failure: the cluster did not come up / a daemon would not stop (`status`: cluster is down)
#   2  usage error
#   3  cannot start a local Slurm cluster on this machine (not root, no apt-get/dpkg,
#      package install failed); the one-line message starts with
#      "cannot start a local Slurm cluster:" so tests can report "not run" rather than fail.
set -euo pipefail

SCRATCH="${BLINDSPOT_SLURM_DIR:-/tmp/blindspot-slurm}"
WAIT_S="${BLINDSPOT_SLURM_WAIT:-60}"
CONF="$SCRATCH/slurm.conf"
CTLD_PID="$SCRATCH/slurmctld.pid"
SLURMD_PID="$SCRATCH/slurmd.pid"
# Presence of this file means *we* started munged, so `stop` may stop it;
# a munged someone else runs is left alone.
MUNGE_OURS="$SCRATCH/munged.started-by-us"
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key

log() { printf 'local-cluster: %s\n' "$*" >&2; }

cannot() {
    printf 'cannot start a local Slurm cluster: %s\n' "$*" >&2
    exit 3
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# A pid file is trusted only if its process is alive *and* has the expected
# command name: pids get reused, and other work shares this machine.
pid_from_file() { # file comm -> prints pid, returns 1 if not running
    local file=$1 comm=$2 pid
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm") == "$comm" ]] || return 1
    printf '%s\n' "$pid"
}

node_name() { hostname -s; }

node_state() {
    SLURM_CONF=$CONF timeout 10 sinfo -h -n "$(node_name)" -o '%t' 2>/dev/null | head -n1
}

is_up() {
    pid_from_file "$CTLD_PID" slurmctld >/dev/null &&
        pid_from_file "$SLURMD_PID" slurmd >/dev/null &&
        [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]
}

show_logs() {
    local f
    for f in "$SCRATCH/ctld.log" "$SCRATCH/d.log" "$SCRATCH/daemons.out"; do
        [[ -s $f ]] || continue
        printf -- '--- tail of %s ---\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

ensure_packages() {
    if command -v sinfo >/dev/null && command -v slurmctld >/dev/null &&
        command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || cannot "Slurm is not installed and there is no apt-get"
    command -v dpkg >/dev/null || cannot "Slurm is not installed and there is no dpkg"
    log "installing slurm-wlm and munge (about a minute)"
    # noninteractive: a debconf prompt would hang a test run forever.
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } \
        >"${TMPDIR:-/tmp}/blindspot-slurm-apt.log" 2>&1; then
        tail -n 5 "${TMPDIR:-/tmp}/blindspot-slurm-apt.log" >&2 || true
        cannot "apt-get install slurm-wlm munge failed (log: ${TMPDIR:-/tmp}/blindspot-slurm-apt.log)"
    fi
}

ensure_munge() {
    if [[ ! -e $MUNGE_KEY ]]; then
        # Generate only when absent: replacing a key breaks any munged and
        # credentials already using it.
        install -d -m 700 -o munge -g munge /etc/munge
        (umask 277 && head -c 1024 /dev/urandom >"$MUNGE_KEY")
        chown munge:munge "$MUNGE_KEY"
        chmod 400 "$MUNGE_KEY"
    fi
    # /run is a tmpfs that may have been wiped since the package install.
    install -d -m 755 -o munge -g munge /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return # a working munged is already running (ours or someone else's)
    fi
    # munged refuses to run as root; the key and socket belong to `munge`.
    # 9>&-: a daemon must not inherit the lock fd, or it holds the lock forever.
    su -s /bin/sh munge -c munged 9>&-
    touch "$MUNGE_OURS"
    local _
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    log "munged did not come up"
    return 1
}

write_conf() {
    local node cpus mem_mb
    node=$(node_name)
    cpus=$(nproc)
    # slurmd drains a node that reports less memory than RealMemory, and the
    # kernel/firmware reservation varies: declare 90% of MemTotal.
    mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p "$SCRATCH/state" "$SCRATCH/spool"
    # batch_sched_delay=0: Slurm's default lets a submitted batch job wait up to
    # 3 s for a scheduling pass; measured here it makes a trivial job take ~3 s
    # instead of ~1 s, which adds up across end-to-end tests.
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm/local-cluster.sh; rewritten on every start.
ClusterName=local
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$SCRATCH/ctld.log
SlurmdLogFile=$SCRATCH/d.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || cannot "not root (slurmd/munged need root here)"
    mkdir -p "$SCRATCH"
    # Tests may call `start` concurrently; serialise so only one launches daemons.
    exec 9>"$SCRATCH/.lock"
    flock -w 300 9 || { log "timed out waiting for $SCRATCH/.lock"; exit 1; }

    if is_up; then
        log "already running (SLURM_CONF=$CONF); nothing to do"
        return 0
    fi
    ensure_packages
    ensure_munge || { show_logs; exit 1; }

    # A half-up cluster (one daemon dead) is restarted from scratch rather
    # than patched, so the state we end up in is always the same.
    stop_daemons
    write_conf
    local t0=$SECONDS
    # -c: drop jobs left from a previous run, so a test starts with an empty queue.
    # 9>&- as for munged: daemons must not keep the start/stop lock.
    slurmctld -c -f "$CONF" >>"$SCRATCH/daemons.out" 2>&1 9>&- || {
        log "slurmctld failed to start"
        show_logs
        exit 1
    }
    slurmd -f "$CONF" >>"$SCRATCH/daemons.out" 2>&1 9>&- || {
        log "slurmd failed to start"
        show_logs
        exit 1
    }
    while ((SECONDS - t0 < WAIT_S)); do
        if is_up; then
            log "up after $((SECONDS - t0)) s: node $(node_name) $(node_state); SLURM_CONF=$CONF"
            return 0
        fi
        # A daemon that died (typically: ports 6817/6818 taken by another
        # cluster, whose sinfo would then answer for ours) will not recover.
        if ((SECONDS - t0 >= 2)) && ! { pid_from_file "$CTLD_PID" slurmctld >/dev/null &&
            pid_from_file "$SLURMD_PID" slurmd >/dev/null; }; then
            log "a Slurm daemon exited during startup (is another cluster running on this machine?)"
            show_logs
            stop_daemons || true
            exit 1
        fi
        sleep 1
    done
    log "node not idle after ${WAIT_S} s (state: '$(node_state)')"
    show_logs
    stop_daemons || true
    exit 1
}

# Signal by pid file, then wait; SIGKILL only the same pid if it ignores TERM.
stop_one() { # pidfile comm
    local pid _
    pid=$(pid_from_file "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 60); do
        [[ -e /proc/$pid ]] || return 0
        sleep 0.5
    done
    log "$2 (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    [[ ! -e /proc/$pid ]]
}

stop_daemons() {
    # slurmd first: it reports to slurmctld while shutting down.
    stop_one "$SLURMD_PID" slurmd || return 1
    stop_one "$CTLD_PID" slurmctld || return 1
}

cmd_stop() {
    local clean=0
    case "${1:-}" in
    "") ;;
    --clean) clean=1 ;;
    *) usage ;;
    esac
    if [[ ! -d $SCRATCH ]]; then
        log "not running (no $SCRATCH)"
        return 0
    fi
    exec 9>"$SCRATCH/.lock"
    flock -w 300 9 || { log "timed out waiting for $SCRATCH/.lock"; exit 1; }
    stop_daemons || exit 1
    if [[ -e $MUNGE_OURS ]]; then
        stop_one "$MUNGE_PID" munged || exit 1
        rm -f "$MUNGE_OURS"
    fi
    if ((clean)); then
        rm -rf -- "$SCRATCH"
        log "stopped; removed $SCRATCH"
    else
        log "stopped; logs and state kept in $SCRATCH"
    fi
}

cmd_status() {
    if is_up; then
        echo "up: node $(node_name) $(node_state); SLURM_CONF=$CONF"
        return 0
    fi
    local ctld=down slurmd=down
    pid_from_file "$CTLD_PID" slurmctld >/dev/null && ctld=running
    pid_from_file "$SLURMD_PID" slurmd >/dev/null && slurmd=running
    echo "down: slurmctld $ctld, slurmd $slurmd (scratch $SCRATCH)"
    return 1
}

cmd_env() {
    printf 'export SLURM_CONF=%q\n' "$CONF"
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    start) [[ $# -eq 0 ]] || usage; cmd_start ;;
    stop) [[ $# -le 1 ]] || usage; cmd_stop "$@" ;;
    status) [[ $# -eq 0 ]] || usage; cmd_status ;;
    env) [[ $# -eq 0 ]] || usage; cmd_env ;;
    *) usage ;;
    esac
}

main "$@"
