"""AdamW with warm-up and decay, a weight-decay mask and global-norm clipping (optax)."""

from __future__ import annotations

import jax
import optax

from teamsrl_jax.sft.config import SFTConfig


def lr_schedule(cfg: SFTConfig, total_steps: int) -> optax.Schedule:
    """Hugging Face's schedule: lr rises linearly from 0 at step 0 to ``learning_rate`` at ``warmup_steps``,
    then decays (cosine / linear / constant) to ``learning_rate * min_lr_ratio`` at ``total_steps``."""
    peak = cfg.learning_rate
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if cfg.lr_schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.lr_schedule == "linear":
        decay = optax.linear_schedule(peak, peak * cfg.min_lr_ratio, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if not warmup:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params, no_decay: tuple[str, ...]):
    """A pytree of bools: True where weight decay applies (path contains none of ``no_decay``)."""
    def keep(path, _):
        name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path).lower()
        return not any(s.lower() in name for s in no_decay)
    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg: SFTConfig, total_steps: int) -> optax.GradientTransformation:
    """clip_by_global_norm (when ``max_grad_norm`` > 0) then AdamW with the schedule and decay mask."""
    adamw = optax.adamw(lr_schedule(cfg, total_steps), b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps,
                        weight_decay=cfg.weight_decay, mask=lambda p: decay_mask(p, cfg.no_decay))
    if cfg.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)
    return adamw
