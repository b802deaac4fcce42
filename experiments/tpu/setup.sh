#!/usr/bin/env bash
# Create a Cloud TPU VM (one host, or a pod slice of several), install this package with jax[tpu] on every
# worker, and copy the base model, the Alpaca seeds and the evaluation data from a GCS bucket onto every
# worker's disk, where the experiment configs look for them (models/, data/ in the checkout).
#
#   BUCKET=gs://my-bucket bash experiments/tpu/setup.sh                       # v5p-8: the whole pipeline
#   BUCKET=gs://my-bucket ACCELERATOR=v4-32 ZONE=us-central2-b VERSION=tpu-ubuntu2204-base \
#       bash experiments/tpu/setup.sh                                         # a pod slice: SFT only
#
# Run it from the repository root with gcloud authenticated and a project set. The bucket holds
#   models/Llama-2-7b-hf/   data/alpaca_data.json   data/eval/{arc,hellaswag}/...
# and the TPU VM's service account needs read and write access to it (checkpoints go there too).
set -euo pipefail

NAME=${NAME:-teamsrl}                          # the TPU VM's name
ZONE=${ZONE:-us-east5-a}                       # a zone that offers ACCELERATOR
ACCELERATOR=${ACCELERATOR:-v5p-8}              # v5p-8 / v6e-8: one host, >= 256 GB of HBM: paper_full.yaml fits
VERSION=${VERSION:-v2-alpha-tpuv5}             # software version for ACCELERATOR (v4: tpu-ubuntu2204-base,
                                               # v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e)
BUCKET=${BUCKET:?set BUCKET=gs://your-bucket}
MODEL=${MODEL:-Llama-2-7b-hf}                  # folder under BUCKET/models/
CHECKOUT=teamsrl-jax                           # the package's folder under ~ on every worker
WORK=$(mktemp -d)
TARBALL=$WORK/$CHECKOUT.tar.gz
trap 'rm -rf "$WORK"' EXIT

tpu_ssh() {  # tpu_ssh WORKER COMMAND: one command on one worker (0, 1, ...) or on all of them (all)
  gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker="$1" --command="$2"
}

# 1. The VM (or slice).
gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$ACCELERATOR" --version="$VERSION"

# 2. The code: the committed HEAD (no virtual environment, runs or caches), the same on every worker.
git archive --format=tar.gz -o "$TARBALL" HEAD
gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:$CHECKOUT.tar.gz" --zone="$ZONE" --worker=all

# 3. Python >= 3.11 (the TPU images ship Ubuntu 22.04's 3.10), this package, jax[tpu] (libtpu comes from PyPI),
#    gcsfs (orbax writes gs:// checkpoints through it without TensorFlow) and tensorboardX, on every worker.
tpu_ssh all "set -euo pipefail
  mkdir -p ~/$CHECKOUT && tar -xzf ~/$CHECKOUT.tar.gz -C ~/$CHECKOUT
  sudo apt-get update -qq && sudo apt-get install -y -qq python3.11 python3.11-venv
  cd ~/$CHECKOUT && python3.11 -m venv .venv && . .venv/bin/activate
  pip install -q -U pip && pip install -q -e . 'jax[tpu]' gcsfs tensorboardX
  python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"

# 4. The base model, the seeds and the evaluation files on every worker's disk.
tpu_ssh all "set -euo pipefail
  cd ~/$CHECKOUT && mkdir -p models data
  gcloud storage cp -r $BUCKET/models/$MODEL models/
  gcloud storage cp $BUCKET/data/alpaca_data.json data/
  gcloud storage cp -r $BUCKET/data/eval data/"

echo "ready: $NAME ($ACCELERATOR, $ZONE); next: experiments/tpu/run_pipeline.sh (one host) or sft_multihost.sh"
