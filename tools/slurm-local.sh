#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the workflow's SLURM route (tests/test_slurm.py).
#
#   tools/slurm-local.sh start    install slurm-wlm + munge if missing (needs root and apt), write
#                                 slurm.conf for this host, start munged, slurmctld, slurmd, wait for idle
#   tools/slurm-local.sh stop     stop the daemons this script started (by their recorded PIDs)
#   tools/slurm-local.sh status   print the node state; exit 0 when the node is up, 1 when not
#
# Every file lives under $PGOLF_SLURM_DIR (default /var/tmp/pgolf-slurm) except /etc/slurm/slurm.conf,
# a symlink to the generated file: the Snakemake slurm jobstep plugin drops SLURM_CONF inside jobs, so
# srun must find the config at its compiled-in path. `stop` removes that symlink again.
# There is no accounting (no slurmdbd), so sacct does not work: run Snakemake with
# `--slurm-status-command squeue`. The node advertises $PGOLF_SLURM_GPUS (default 8) fake GPUs
# (symlinks to /dev/null), so `--gpus=N` jobs are scheduled; no GPU is really there.
# Recipe and pitfalls: /work/shared/spec/slurm-local.md (Debian 12, slurm-wlm 22.05, no systemd).
set -euo pipefail

DIR=${PGOLF_SLURM_DIR:-/var/tmp/pgolf-slurm}
NGPU=${PGOLF_SLURM_GPUS:-8}
SOCK=$DIR/munge/munge.socket.2
DAEMONS="slurmd slurmctld munged"   # stop order
export SLURM_CONF=$DIR/etc/slurm.conf

die() { echo "slurm-local: $*" >&2; exit 1; }

alive() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

node_state() { sinfo -h -o %T 2>/dev/null | head -1; }

# The node is up when our three daemons run and it reports idle (or busy with jobs).
is_up() {
    alive munged && alive slurmctld && alive slurmd || return 1
    case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and installing them needs root"
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
    echo "slurm-local: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update once and retry.
    apt-get install -y -q slurm-wlm munge >"$DIR/log/apt.log" 2>&1 ||
        { apt-get update -q >>"$DIR/log/apt.log" 2>&1 && apt-get install -y -q slurm-wlm munge >>"$DIR/log/apt.log" 2>&1; } ||
        die "apt-get install slurm-wlm munge failed, see $DIR/log/apt.log"
}

# Run a daemon in the foreground mode, backgrounded, and record its PID.
launch() {
    local name=$1
    shift
    nohup "$@" >"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/run/$name.pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll every 0.2 s
    local tries=$(($1 * 5)) what=$2
    shift 2
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.2; done
    die "$what did not come up within ${tries}/5 s; logs in $DIR/log"
}

write_config() {
    local host node mem
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
    # slurmd -C prints this machine's real layout: NodeName=vm CPUs=2 ... RealMemory=24105
    node=$(slurmd -C | head -1)
    mem=$(sed 's/.*RealMemory=\([0-9]*\).*/\1/' <<<"$node")
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 95 / 100))/" <<<"$node")
    for i in $(seq 0 $((NGPU - 1))); do ln -sfn /dev/null "$DIR/fakegpu/nvidia$i"; done
    cat >"$DIR/etc/slurm.conf" <<CONF
# Written by tools/slurm-local.sh for $host: one node, root, no accounting, no cgroups.
ClusterName=pgolf
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.daemon.pid
SlurmdPidFile=$DIR/run/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job with no --mem takes the whole node's memory.
DefMemPerCPU=1000
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
$node Gres=gpu:$NGPU State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    cat >"$DIR/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=$host Name=gpu File=$DIR/fakegpu/nvidia[0-$((NGPU - 1))]
CONF
    mkdir -p /etc/slurm
    if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$DIR/etc/slurm.conf" ]; then
        die "/etc/slurm/slurm.conf exists and is not ours; move it away first"
    fi
    ln -sfn "$DIR/etc/slurm.conf" /etc/slurm/slurm.conf
}

stop() {
    local d pid
    for d in $DAEMONS; do
        [ -f "$DIR/run/$d.pid" ] || continue
        pid=$(cat "$DIR/run/$d.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            echo "slurm-local: stopped $d ($pid)"
        fi
        rm -f "$DIR/run/$d.pid"
    done
    if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/etc/slurm.conf" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
}

start() {
    if command -v sinfo >/dev/null && is_up; then
        echo "slurm-local: already up"
        sinfo -o '%P %N %c %m %G %T'
        return 0
    fi
    stop >/dev/null  # whatever half of it may still run
    mkdir -p "$DIR"/{etc,state,spool,log,run,munge,fakegpu}
    install_packages
    [ "$(id -u)" = 0 ] || die "starting the daemons needs root"

    # munge on a private socket and key (munged wants +x on every directory of the socket path)
    chmod 711 "$DIR" "$DIR/munge"
    [ -f "$DIR/munge/munge.key" ] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
    launch munged munged -F --socket="$SOCK" --key-file="$DIR/munge/munge.key" --log-file="$DIR/log/munged.log" \
        --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed"
    wait_for 10 munged bash -c "munge -S '$SOCK' -n | unmunge -S '$SOCK' >/dev/null 2>&1"

    write_config
    # -i: ignore missing or stale state (a fresh machine, or a crashed earlier run)
    launch slurmctld slurmctld -D -i
    wait_for 20 slurmctld bash -c "scontrol ping 2>/dev/null | grep -q UP"
    launch slurmd slurmd -D
    wait_for 30 "node $(hostname -s)" bash -c '[ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]'
    sinfo -o '%P %N %c %m %G %T'
}

status() {
    if command -v sinfo >/dev/null && is_up; then
        sinfo -o '%P %N %c %m %G %T'
        return 0
    fi
    echo "slurm-local: not running"
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: tools/slurm-local.sh start|stop|status" ;;
esac
