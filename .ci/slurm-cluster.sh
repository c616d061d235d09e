#!/usr/bin/env bash
# A Slurm cluster on this machine, for the real-Slurm tests: Debian's slurm-wlm and munge, two node
# entries (n1, n2) on this one host, each a slurmd of its own (Debian builds Slurm with multiple-slurmd
# support) declaring the host's hardware, so that a job can ask for 2 nodes (--nodes=2) as on a real
# cluster. No accounting storage (Snakemake checks status with squeue), partition "ci".
# Run as root. Idempotent: daemons already running are left as they are (so stop the daemons of a
# cluster started from another slurm.conf first: they would keep its nodes).
set -euo pipefail
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
host=$(hostname -s)
hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')  # CPUs=... RealMemory=...
nodes=(n1 n2)
mkdir -p /etc/slurm /var/spool/slurmctld /var/log/slurm
for n in "${nodes[@]}"; do mkdir -p "/var/spool/slurmd/$n"; done
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
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
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 $hardware
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 $hardware
PartitionName=ci Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
for n in "${nodes[@]}"; do
    pgrep -f "^slurmd -N $n\$" >/dev/null || slurmd -N "$n"
done
states=unknown
for _ in $(seq 60); do  # bounded: one minute at most
    states=$(sinfo -h -N -o %t 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [ "$states" = "idle " ]; then
        echo "slurm: nodes ${nodes[*]} (on $host) idle in partition ci"
        exit 0
    fi
    sleep 1
done
echo "slurm: nodes not idle after 60 s (states: $states)" >&2
tail -20 /var/log/slurm/*.log >&2
exit 1
