#!/usr/bin/env bash
# The SFT stage alone on a multi-host TPU pod slice made by setup.sh (e.g. v4-32: 4 hosts, 16 chips of 32 GB):
# the same command on every worker. Each process reads the whole data file, builds the same rows and feeds
# only its share of every global batch; python -m teamsrl_jax.sft calls jax.distributed.initialize() when
# it sees a multi-host environment. Checkpoints go to GCS, which all hosts share; worker 0 writes the
# metrics and the Hugging Face export, copied to GCS at the end.
#
# The data are the SFT examples of a pipeline run made elsewhere (runs/paper/split/train.jsonl, copied to
# BUCKET/runs/paper/split/), or any Alpaca / chat file. The pipeline itself is one process on one host.
#
#   BUCKET=gs://my-bucket ZONE=us-central2-b bash experiments/tpu/sft_multihost.sh
#   (after a preemption: the same command; it resumes from the newest checkpoint)
set -euo pipefail

NAME=${NAME:-teamsrl}
ZONE=${ZONE:-us-central2-b}
BUCKET=${BUCKET:?set BUCKET=gs://your-bucket}
DATA=${DATA:-$BUCKET/runs/paper/split/train.jsonl}   # the SFT examples
CONFIG=${CONFIG:-experiments/sft_llama2_7b.yaml}      # the paper's recipe (REFERENCE section 4)
MODEL=${MODEL:-models/Llama-2-7b-hf}                  # on every worker's disk (setup.sh)
RUN=${RUN:-sft_llama2_7b}                             # runs/RUN on the workers, BUCKET/runs/RUN on GCS
MESH=${MESH:-fsdp=-1}                                 # all 16 chips in fsdp: 108 GB of state, ~7 GB a chip
CHECKOUT=teamsrl-jax

tpu_ssh() {  # tpu_ssh WORKER COMMAND
  gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker="$1" --command="$2"
}

# 1. The data file on every worker.
tpu_ssh all "mkdir -p ~/$CHECKOUT/data && gcloud storage cp $DATA ~/$CHECKOUT/data/$RUN.jsonl"

# 2. The same command on every worker, at once (--worker=all); --resume starts from step 0 when there is no
#    checkpoint yet. Keep this terminal open (or run the script under tmux): closing it stops the workers.
tpu_ssh all "set -euo pipefail
  cd ~/$CHECKOUT && . .venv/bin/activate
  python -m teamsrl_jax.sft --config $CONFIG --model $MODEL --data data/$RUN.jsonl --out runs/$RUN \
    --checkpoint-dir $BUCKET/runs/$RUN/checkpoints --mesh $MESH --resume --no-progress"

# 3. Worker 0's outputs (metrics.jsonl, summary.json, final/) to GCS, for evaluation on one host.
tpu_ssh 0 "gcloud storage rsync -r ~/$CHECKOUT/runs/$RUN $BUCKET/runs/$RUN"
echo "done: $BUCKET/runs/$RUN/final"
