#!/usr/bin/env bash
# The whole pipeline (experiments/paper_full.yaml) on one machine with 8 GPUs (80 GB each; 4 are enough),
# then HellaSwag 10-shot on the base and the fine-tuned model. Run it on that machine, from the repository
# root, e.g. under tmux; running it again resumes where it stopped (every finished stage is skipped, SFT
# continues from its last checkpoint).
#
#   bash experiments/gpu/run_paper.sh                                   # installs, then runs
#   CONFIG=experiments/paper_smoke.yaml RUN=paper_smoke bash experiments/gpu/run_paper.sh   # minutes, first
#
# Before: the files the config names (models/Llama-2-7b-hf, data/alpaca_data.json, data/eval/), the
# policy-training LLM server at the config's train_policy.backend.base_url, and OPENAI_API_KEY exported for
# generation. Serve the 13B on another machine: JAX takes most of these GPUs' memory when it starts, e.g.
#   vllm serve WizardLM/WizardLM-13B-V1.2 --port 8000 --chat-template template_vicuna.jinja
set -euo pipefail

CONFIG=${CONFIG:-experiments/paper_full.yaml}
RUN=${RUN:-paper}                       # the run folder: runs/RUN
PYTHON=${PYTHON:-python3}               # Python >= 3.11
EVAL_DATA=data/eval                     # the config's eval_data
: "${OPENAI_API_KEY:?export OPENAI_API_KEY (the generation roles)}"

# 1. This package with CUDA 12 JAX (and tensorboardX for the SFT's TensorBoard files), once.
if [ ! -d .venv ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e . "jax[cuda12]" tensorboardX
fi
. .venv/bin/activate
python -c 'import jax; print(jax.devices())'

# 2. The pipeline: policy, data, split, SFT (mesh fsdp=-1 over every GPU), ARC-Challenge 25-shot before and
#    after, membership inference, dataset report, runs/RUN/report.md.
resume=$(test -f "runs/$RUN/state.json" && echo --resume || true)
python -m teamsrl_jax.pipeline --config "$CONFIG" --out "runs/$RUN" $resume

# 3. HellaSwag 10-shot on both models (the pipeline's evaluate section has one num_fewshot).
base=$(python -c "import json; print(json.load(open('runs/$RUN/state.json'))['stages']['base']['summary']['path'])")
for which in base sft; do
  model=$base
  if [ "$which" = sft ]; then model=runs/$RUN/sft/final; fi
  out=runs/$RUN/hellaswag_10shot/$which/results.json
  test -f "$out" || python -m teamsrl_jax.evaluate --model "$model" --tasks hellaswag --num-fewshot 10 \
    --data-dir "$EVAL_DATA" --dtype float32 --mesh fsdp=-1 --batch-size 64 --log-samples --out "$out"
done
echo "report: runs/$RUN/report.md; HellaSwag 10-shot: runs/$RUN/hellaswag_10shot/{base,sft}/results.json"
