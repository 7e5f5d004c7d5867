# --- environment shared by every vla-dipole job (rendered into each script) ---
set -uo pipefail
cd {{repo_dir}}
if [ -f {{venv}}/bin/activate ]; then source {{venv}}/bin/activate; fi
{{env_exports}}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export MKL_NUM_THREADS=${OMP_NUM_THREADS}
export TOKENIZERS_PARALLELISM=false
# NCCL: fail fast instead of hanging on a dead peer; gloo/NCCL pick the interface of the default route
# unless the cluster pins one (export NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME in your site profile).
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
mkdir -p {{run_dir}}/logs
echo "[vla-dipole] job ${SLURM_JOB_ID:-?} array ${SLURM_ARRAY_TASK_ID:-none} on $(hostname) at $(date -Is)"
