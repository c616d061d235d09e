#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the real-Slurm tests:
# Debian's slurm-wlm and munge, a slurm.conf for this node (from `slurmd -C`),
# no accounting storage (so Snakemake checks status with squeue), partition "ci".
# Run as root. Idempotent: daemons already running are left as they are.
set -euo pipefail
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
host=$(hostname -s)
node=$(slurmd -C | head -1)  # NodeName=... CPUs=... RealMemory=...
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
state=unknown
for _ in $(seq 60); do  # bounded: one minute at most
    state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
    if [ "$state" = "idle" ]; then
        echo "slurm: node $host idle in partition ci"
        exit 0
    fi
    sleep 1
done
echo "slurm: node not idle after 60 s (state: $state)" >&2
tail -20 /var/log/slurm/*.log >&2
exit 1
