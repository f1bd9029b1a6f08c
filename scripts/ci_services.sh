#!/usr/bin/env bash
# Services the tests use, not the main job: Debian's slurm-wlm and munge for the real-Slurm test
# (tests/test_slurm.py starts its own single-node cluster from them, tests/slurm_cluster.py).
# Needs root and apt-get; elsewhere it says why and changes nothing (that test is then skipped).
set -euo pipefail
need=()
for prog in munged slurmctld slurmd sbatch; do
  command -v "$prog" >/dev/null || [ -x "/usr/sbin/$prog" ] || need+=("$prog")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "ci_services: slurm and munge are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "ci_services: ${need[*]} missing and not installable here (needs root and apt-get); the Slurm test will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends slurm-wlm munge \
  || { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm munge; }
echo "ci_services: installed slurm-wlm and munge"
