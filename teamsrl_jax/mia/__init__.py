"""Membership inference against a fine-tuned model: did it train on these examples?

    python -m teamsrl_jax.mia --model runs/sft/final --members train.jsonl --nonmembers heldout.jsonl --out runs/mia

Modules: documents (each example's SFT text and tokens, through the SFT's own encoding), scores (token
log-probabilities and next-token entropy statistics from the model in bucketed jitted batches; MIMIR's LOSS,
zlib, Min-K%, Min-K%++ and reference scores, oriented higher = member), metrics (ROC AUC, ROC curve, TPR at
low FPR, stratified bootstrap intervals, in NumPy), report (table, ``roc.png``), run (``MIAConfig``,
``run_mia``).
"""

from teamsrl_jax.mia.documents import Document, sft_documents, sft_text
from teamsrl_jax.mia.metrics import evaluate, roc_auc, roc_curve, tpr_at_fpr
from teamsrl_jax.mia.run import MIAConfig, run_mia
from teamsrl_jax.mia.scores import SCORE_NAMES, TokenScorer, TokenStats, member_scores

__all__ = ["SCORE_NAMES", "Document", "MIAConfig", "TokenScorer", "TokenStats", "evaluate", "member_scores",
           "roc_auc", "roc_curve", "run_mia", "sft_documents", "sft_text", "tpr_at_fpr"]
