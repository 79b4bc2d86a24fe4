#!/usr/bin/env bash
# Bring up, or tear down, a one-node SLURM cluster on this machine for the workflow tests.
#
# Usage:
#   scripts/slurm-cluster.sh install        install Debian's packages (root, apt-get)
#   scripts/slurm-cluster.sh up DIR         start the cluster; every file it needs lives in DIR
#   scripts/slurm-cluster.sh down DIR       cancel its jobs, stop the daemons it started by PID
#   scripts/slurm-cluster.sh env DIR        print the line that points SLURM's commands at it:
#                                           eval "$(scripts/slurm-cluster.sh env DIR)"
#
# The cluster: munged, MariaDB (accounting database), slurmdbd, slurmctld and one slurmd, each
# started in the foreground (-D) in the background of this script, with its PID recorded in
# DIR/pids. Every daemon listens on 127.0.0.1 only, on ports chosen free at start-up, so two
# clusters (a developer's and CI's) can run side by side. The node has fake GPUs (empty files
# in gres.conf) so that jobs requesting --gpus=1 are scheduled on a machine without one.
# Tested with Debian 12's slurm-wlm 22.05 and MariaDB 10.11.
#
# HALO_SLURM_CPUS sets the node's CPU count (default: nproc); more CPUs than cores lets more
# small jobs run at once. HALO_SLURM_GPUS sets its number of fake GPUs (default: 1).
#
# Accounting through slurmdbd is required: snakemake-executor-plugin-slurm polls job states
# with sacct, which answers nothing without an accounting database.

set -euo pipefail

CLUSTER_NAME=halotest
ACCOUNT=halotest
NODE_NAME=halotest-node
PARTITION=debug

die() {
    echo "slurm-cluster: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Wait until COMMAND succeeds, for at most SECONDS seconds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "timed out after ${seconds} s waiting for ${what}; see the logs in ${STATE}/log"
        fi
        sleep 0.5
    done
}

port_open() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1"
}

# Start one daemon in the background and record its PID under its name.
start_daemon() {
    local name=$1
    shift
    "$@" >"${STATE}/log/${name}.out" 2>&1 &
    echo "$!" >"${STATE}/pids/${name}"
}

cmd_install() {
    [[ $(id -u) == 0 ]] || die "installing Debian's packages needs root"
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm, slurmdbd, munge and mariadb-server with this system's package manager"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server
}

write_configs() {
    local memory_mb
    # Offer the node most of the machine's memory but keep some for the daemons themselves.
    memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

    cat >"${STATE}/etc/slurm.conf" <<EOF
ClusterName=${CLUSTER_NAME}
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${STATE}/munge/munge.socket
CredType=cred/munge
StateSaveLocation=${STATE}/state
SlurmdSpoolDir=${STATE}/spool/slurmd.%n
SlurmctldPidFile=${STATE}/run/slurmctld.pid
SlurmdPidFile=${STATE}/run/slurmd.%n.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
# No cgroups in containers or CI: track job processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job is given the whole node's memory and the jobs run one at a time.
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=${DBD_PORT}
# For slurmdbd connections this names the MUNGE socket (AuthInfo does not reach them in 22.05).
AccountingStoragePass=${STATE}/munge/munge.socket
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep the --comment of each job (Snakemake writes the rule and wildcards there) for sacct.
AccountingStoreFlags=job_comment
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=${NODE_NAME} NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=${NODE_CPUS} RealMemory=${memory_mb} Gres=gpu:${NODE_GPUS} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE_NAME} Default=YES MaxTime=INFINITE State=UP
EOF

    # snakemake-executor-plugin-slurm-jobstep removes every SLURM_* variable, SLURM_CONF
    # included, before it calls srun inside a job, so srun would look for /etc/slurm/slurm.conf.
    # A real cluster has that file; this one keeps its configuration in DIR, and a wrapper
    # first on PATH points srun back to it.
    mkdir -p "${STATE}/bin"
    printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "${STATE}/etc/slurm.conf" "$(command -v srun)" >"${STATE}/bin/srun"
    chmod 755 "${STATE}/bin/srun"

    # Fake GPUs: Slurm counts a GPU per device file, and empty files stand in for /dev/nvidia*.
    # A job that requests one is scheduled and then runs on the CPU.
    mkdir -p "${STATE}/dev"
    local gpu
    for ((gpu = 0; gpu < NODE_GPUS; gpu++)); do
        : >"${STATE}/dev/fake-gpu${gpu}"
    done
    echo "NodeName=${NODE_NAME} Name=gpu File=${STATE}/dev/fake-gpu[0-$((NODE_GPUS - 1))]" >"${STATE}/etc/gres.conf"

    cat >"${STATE}/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=${STATE}/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=${DBD_PORT}
SlurmUser=root
PidFile=${STATE}/run/slurmdbd.pid
LogFile=${STATE}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=${MYSQL_PORT}
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    # slurmdbd rejects a configuration file that other users can read.
    chmod 600 "${STATE}/etc/slurmdbd.conf"
}

cmd_up() {
    [[ $(id -u) == 0 ]] || die "the test cluster runs its daemons as root; run as root"
    local binary
    for binary in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr sbatch; do
        command -v "$binary" >/dev/null || die "$binary not found: run '$0 install' first"
    done
    NODE_CPUS=${HALO_SLURM_CPUS:-$(nproc)}
    NODE_GPUS=${HALO_SLURM_GPUS:-1}
    [[ -e ${STATE}/pids ]] && die "${STATE} already contains a running cluster; run '$0 down ${STATE}' first"

    mkdir -p "${STATE}"/{etc,munge,mysql,state,spool,run,log,pids}
    # A half-started cluster is torn down again, so a failed start leaves no daemon behind.
    trap 'cmd_down >/dev/null 2>&1 || true' EXIT
    # munged requires a socket folder that every user can enter.
    chmod 755 "${STATE}/munge"
    CTLD_PORT=$(free_port)
    SLURMD_PORT=$(free_port)
    DBD_PORT=$(free_port)
    MYSQL_PORT=$(free_port)
    write_configs
    export SLURM_CONF=${STATE}/etc/slurm.conf

    dd if=/dev/urandom of="${STATE}/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "${STATE}/munge/munge.key"
    start_daemon munged munged --foreground --force \
        --key-file="${STATE}/munge/munge.key" --socket="${STATE}/munge/munge.socket" \
        --pid-file="${STATE}/run/munged.pid" --log-file="${STATE}/log/munged.log" \
        --seed-file="${STATE}/munge/munged.seed"
    wait_for 20 "munged" test -S "${STATE}/munge/munge.socket"

    mariadb-install-db --no-defaults --user=root --datadir="${STATE}/mysql" \
        --auth-root-authentication-method=normal --skip-test-db >"${STATE}/log/mariadb-install-db.out" 2>&1 \
        || die "mariadb-install-db failed; see ${STATE}/log/mariadb-install-db.out"
    # No grant tables: the database listens on 127.0.0.1 only and lives as long as the test.
    start_daemon mariadbd mariadbd --no-defaults --user=root --datadir="${STATE}/mysql" \
        --bind-address=127.0.0.1 --port="${MYSQL_PORT}" --socket="${STATE}/run/mysqld.sock" \
        --pid-file="${STATE}/run/mysqld.pid" --log-error="${STATE}/log/mariadbd.log" \
        --skip-grant-tables --skip-name-resolve \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
    wait_for 60 "MariaDB on port ${MYSQL_PORT}" port_open "${MYSQL_PORT}"

    start_daemon slurmdbd slurmdbd -D
    wait_for 60 "slurmdbd on port ${DBD_PORT}" port_open "${DBD_PORT}"

    sacctmgr -i add cluster "${CLUSTER_NAME}" >"${STATE}/log/sacctmgr.out" 2>&1
    sacctmgr -i add account "${ACCOUNT}" Cluster="${CLUSTER_NAME}" >>"${STATE}/log/sacctmgr.out" 2>&1
    sacctmgr -i add user root Account="${ACCOUNT}" Cluster="${CLUSTER_NAME}" >>"${STATE}/log/sacctmgr.out" 2>&1

    start_daemon slurmctld slurmctld -D -i
    wait_for 60 "slurmctld" scontrol ping
    start_daemon slurmd slurmd -D -N "${NODE_NAME}"
    wait_for 60 "node ${NODE_NAME} to become idle" node_idle

    trap - EXIT
    echo "slurm-cluster: up; account ${ACCOUNT}, partition ${PARTITION}, one node with ${NODE_CPUS} CPUs and ${NODE_GPUS} fake GPU(s)"
    print_environment
}

print_environment() {
    echo "export SLURM_CONF=${STATE}/etc/slurm.conf PATH=${STATE}/bin:\$PATH"
}

node_idle() {
    [[ $(sinfo -h -n "${NODE_NAME}" -o '%t') == idle ]]
}

cmd_down() {
    [[ -d ${STATE}/pids ]] || die "no cluster in ${STATE} (no ${STATE}/pids)"
    export SLURM_CONF=${STATE}/etc/slurm.conf

    # Jobs first, so that no slurmstepd outlives its slurmd.
    if [[ -e ${STATE}/pids/slurmctld ]] && kill -0 "$(cat "${STATE}/pids/slurmctld")" 2>/dev/null; then
        scancel --full "--clusters=${CLUSTER_NAME}" --user=root >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 30))
        while [[ -n $(squeue -h -o '%i' 2>/dev/null) ]] && ((SECONDS < deadline)); do
            sleep 0.5
        done
    fi

    local name pid
    for name in slurmd slurmctld slurmdbd mariadbd munged; do
        [[ -e ${STATE}/pids/${name} ]] || continue
        pid=$(cat "${STATE}/pids/${name}")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            local deadline=$((SECONDS + 20))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
                sleep 0.2
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "slurm-cluster: $name (PID $pid) ignored SIGTERM for 20 s; sending SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "${STATE}/pids/${name}"
    done
    rmdir "${STATE}/pids"
    echo "slurm-cluster: down"
}

command=${1:-}
case $command in
    install)
        cmd_install
        ;;
    up | down | env)
        [[ $# == 2 ]] || die "usage: $0 $command DIR"
        mkdir -p "$2"
        STATE=$(cd "$2" && pwd)
        case $command in
            up) cmd_up ;;
            down) cmd_down ;;
            env) print_environment ;;
        esac
        ;;
    *)
        die "usage: $0 install | up DIR | down DIR | env DIR"
        ;;
esac
