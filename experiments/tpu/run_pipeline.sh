#!/usr/bin/env bash
# The whole pipeline (experiments/paper_full.yaml) on a single-host TPU VM made by setup.sh (v5p-8, v6e-8),
# then HellaSwag 10-shot on the base and the fine-tuned model. It runs in the background on the VM, so a
# dropped connection does not stop it; running this script again resumes where it stopped (every finished
# stage is skipped, SFT continues from its last checkpoint). The pipeline is one process on one host: on a pod
# slice use sft_multihost.sh for the SFT stage.
#
#   BUCKET=gs://my-bucket INSTRUCTOR_URL=http://10.128.0.5:8000/v1 OPENAI_API_KEY=sk-... \
#       bash experiments/tpu/run_pipeline.sh
#   gcloud compute tpus tpu-vm ssh teamsrl --zone=us-east5-a --command='tail -f ~/teamsrl-jax/runs/paper.log'
set -euo pipefail

NAME=${NAME:-teamsrl}
ZONE=${ZONE:-us-east5-a}
BUCKET=${BUCKET:?set BUCKET=gs://your-bucket}
CONFIG=${CONFIG:-experiments/paper_full.yaml}   # experiments/paper_smoke.yaml first, with another RUN
RUN=${RUN:-paper}                               # runs/RUN on the VM; BUCKET/runs/RUN: checkpoints, results
INSTRUCTOR_URL=${INSTRUCTOR_URL:?set INSTRUCTOR_URL to the policy-training LLM server, e.g. http://HOST:8000/v1}
: "${OPENAI_API_KEY:?export OPENAI_API_KEY (the generation roles)}"
EVAL_DATA=data/eval                             # the config's eval_data (setup.sh copied it there)
CHECKOUT=teamsrl-jax

on_vm() {  # on_vm COMMAND [< stdin]: one command on the VM (worker 0, its only host)
  gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=0 --command="$1"
}

# The key goes into a file only its owner reads (never onto a command line); the run reads it from there.
printf '%s' "$OPENAI_API_KEY" | on_vm 'umask 077 && cat > ~/.openai_api_key'

# The run's config: CONFIG with the instructor server's address, and SFT checkpoints (~81 GB each) on GCS,
# since the boot disk is too small for them. Written once, so that a rerun resumes with the same config.
on_vm "set -euo pipefail
  cd ~/$CHECKOUT && . .venv/bin/activate && mkdir -p runs
  test -f runs/$RUN.yaml || python -c \"
import yaml
cfg = yaml.safe_load(open('$CONFIG'))
cfg['train_policy']['backend']['base_url'] = '$INSTRUCTOR_URL'
cfg['sft']['checkpoint_dir'] = '$BUCKET/runs/$RUN/checkpoints'
yaml.safe_dump(cfg, open('runs/$RUN.yaml', 'w'), sort_keys=False)\""

# What runs on the VM: the pipeline (resumed when runs/RUN holds one), HellaSwag 10-shot on both models (the
# pipeline's evaluate section has one num_fewshot, used for ARC-Challenge 25-shot), the results to GCS.
on_vm "cat > ~/$CHECKOUT/runs/$RUN.sh" <<SCRIPT
set -euo pipefail
cd ~/$CHECKOUT && . .venv/bin/activate
export OPENAI_API_KEY=\$(cat ~/.openai_api_key)
resume=\$(test -f runs/$RUN/state.json && echo --resume || true)
python -m teamsrl_jax.pipeline --config runs/$RUN.yaml --out runs/$RUN --no-progress \$resume
base=\$(python -c "import json; print(json.load(open('runs/$RUN/state.json'))['stages']['base']['summary']['path'])")
for which in base sft; do
  model=\$base; if [ \$which = sft ]; then model=runs/$RUN/sft/final; fi
  out=runs/$RUN/hellaswag_10shot/\$which/results.json
  test -f \$out || python -m teamsrl_jax.evaluate --model \$model --tasks hellaswag --num-fewshot 10 \\
      --data-dir $EVAL_DATA --dtype float32 --mesh fsdp=-1 --batch-size 64 --log-samples --out \$out
done
gcloud storage rsync -r runs/$RUN $BUCKET/runs/$RUN
SCRIPT
on_vm "cd ~/$CHECKOUT && nohup bash runs/$RUN.sh > runs/$RUN.log 2>&1 < /dev/null &"

echo "started on $NAME: log ~/$CHECKOUT/runs/$RUN.log; results in $BUCKET/runs/$RUN when it ends"
