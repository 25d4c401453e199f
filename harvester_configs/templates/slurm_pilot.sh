#!/bin/bash
# ePIC pilot batch script for Harvester's SlurmSubmitter (install as
# /opt/harvester/etc/epic/slurm_pilot.sh). {placeholders} are filled by the submitter.
#SBATCH --partition={localQueueName}
#SBATCH --nodes={nNode}
#SBATCH --cpus-per-task={nCorePerNode}
#SBATCH --mem={requestRam}M
#SBATCH --time={requestWalltimeMinute}
#SBATCH --job-name=epic-{workerID}
#SBATCH --output={accessPoint}/slurm.%j.out
#SBATCH --error={accessPoint}/slurm.%j.err
export HARVESTER_ID={harvesterID} HARVESTER_WORKER_ID={workerID} GTAG={gtag}
cd {accessPoint}
exec /opt/harvester/etc/epic/runpilot-wrapper.sh -s {computingSite} -r {computingSite} \
  -q {pandaQueueName} -j managed -w generic --pilot-user eic --job-type={jobType}
