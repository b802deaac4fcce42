"""The SFT run: data and model set-up, the sharded jitted step, the loop, checkpoints and export.

``train(cfg)`` is the whole run; everything numerical lives in ``step.py`` (pure) and everything here
is the edge: files, devices, progress. Resume is exact: the checkpoint holds params, optimizer state,
the step and the loader's (epoch, index); the data order is a function of (seed, epoch) and the step
has no other randomness (no dropout).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time

import jax
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from teamsrl_jax.fileio import atomic_write_json
from teamsrl_jax.model import Llama, LlamaConfig, init_model, load_pretrained, save_pretrained
from teamsrl_jax.model.hf_io import load_tokenizer
from teamsrl_jax.model.sharding import MeshConfig, host_local_batch_to_global, logical_sharding, make_mesh
from teamsrl_jax.model.tokenizer import train_tiny_tokenizer
from teamsrl_jax.sft import data as sft_data
from teamsrl_jax.sft.checkpoint import Checkpointer, abstract_like
from teamsrl_jax.sft.config import ConfigError, SFTConfig
from teamsrl_jax.sft.metrics import MetricsWriter, mfu, peak_flops
from teamsrl_jax.sft.optim import make_optimizer
from teamsrl_jax.sft.records import read_records
from teamsrl_jax.sft.step import make_eval_step, make_train_step

log = logging.getLogger(__name__)
BATCH_SPEC = PartitionSpec(("data", "fsdp"))  # rows over data x fsdp, positions whole


# ============================================================================ set-up


def build_mesh(cfg: SFTConfig) -> jax.sharding.Mesh:
    """The run's mesh from ``cfg.mesh``; a bad spec or a batch the mesh cannot split is a ConfigError."""
    try:
        mesh_cfg = MeshConfig.parse(cfg.mesh)
        data, fsdp, _ = mesh_cfg.resolve(jax.device_count())
    except ValueError as e:
        raise ConfigError(f"bad mesh {cfg.mesh!r}: {e}") from None
    micro = cfg.global_batch_size // cfg.grad_accum_steps
    if micro % (data * fsdp):
        raise ConfigError(f"mesh {cfg.mesh!r}: data x fsdp = {data * fsdp} does not divide the microbatch of "
                          f"{micro} rows (global_batch_size / grad_accum_steps)")
    return make_mesh(mesh_cfg)


def load_data(cfg: SFTConfig):
    """Validated records from the JSONL path or through the TFDS array_record builder."""
    if cfg.data_format == "tfds":
        from teamsrl_jax.sft.tfds_builder import load_tfds_records

        return load_tfds_records(cfg.data, cfg.tfds_data_dir or pathlib.Path(cfg.out) / "tfds")
    return read_records(cfg.data)


def _texts(records) -> list[str]:
    return [sft_data.alpaca_prompt(r) + r.output if not r.is_chat else "\n".join(c for _, c in r.messages)
            for r in records]


def build_model(cfg: SFTConfig, records, mesh) -> tuple[Llama, LlamaConfig, object]:
    """(model, its config, tokenizer) from ``cfg.model`` (loaded straight onto ``mesh``) or the tiny preset."""
    numerics = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, remat=cfg.remat)
    if cfg.model:
        model, config, tokenizer = load_pretrained(cfg.model, mesh=mesh, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                                   config_overrides={"remat": cfg.remat})
        if tokenizer is None:
            raise ConfigError(f"{cfg.model}: the checkpoint has no tokenizer files")
        return model, config, tokenizer
    tok_dir = pathlib.Path(cfg.out) / "tokenizer"
    tokenizer = load_tokenizer(tok_dir) if cfg.resume else None  # the same tokenizer as the interrupted run
    if tokenizer is None:
        tokenizer = train_tiny_tokenizer(_texts(records), cfg.tiny_vocab_size,
                                         tok_dir if jax.process_index() == 0 else None)
    config = LlamaConfig.preset(cfg.preset, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                max_position_embeddings=max(cfg.max_length, 512), **numerics)
    # Built on the host and placed on the mesh by compile_steps: tiny models only (a large random init
    # would use init_model(config, mesh=mesh), which never materialises the whole model on one device).
    return init_model(config, seed=cfg.seed), config, tokenizer


def make_loaders(cfg: SFTConfig, tokenizer, records):
    """(train loader, eval loader or None) over the deterministic train/eval split."""
    examples = sft_data.encode(tokenizer, records, cfg.max_length)
    train_idx, eval_idx = sft_data.split_eval(len(examples), eval_fraction=cfg.eval_fraction,
                                              eval_count=cfg.eval_count, seed=cfg.seed)
    common = dict(seq_len=cfg.max_length, packing=cfg.packing, pad_id=tokenizer.pad_token_id or 0,
                  process_index=jax.process_index(), process_count=jax.process_count())
    train = sft_data.PackedLoader([examples[i] for i in train_idx], global_batch=cfg.global_batch_size,
                                  seed=cfg.seed, **common)
    evaluation = None
    if len(eval_idx):
        evaluation = sft_data.PackedLoader([examples[i] for i in eval_idx], shuffle=False,
                                           global_batch=cfg.global_batch_size // cfg.grad_accum_steps, **common)
    return train, evaluation


def total_steps(cfg: SFTConfig, loader: sft_data.PackedLoader) -> int:
    """``max_steps`` when set (the loader keeps cycling epochs, as Hugging Face's max_steps does), else
    all batches of ``epochs`` epochs."""
    return cfg.max_steps if cfg.max_steps > 0 else sum(loader.batches_in_epoch(e) for e in range(cfg.epochs))


# ============================================================================ the run


@dataclasses.dataclass
class Run:
    """What the loop needs: the jitted functions, the sharded state and the data."""

    cfg: SFTConfig
    mesh: jax.sharding.Mesh
    graphdef: object
    rest: object
    params: dict
    opt_state: object
    train_step: object
    eval_step: object
    loader: sft_data.PackedLoader
    eval_loader: sft_data.PackedLoader | None
    config: LlamaConfig
    tokenizer: object
    total_steps: int
    step: int = 0

    def batch(self, host_batch):
        return host_local_batch_to_global(host_batch, self.mesh, BATCH_SPEC)

    def evaluate(self) -> float:
        sums = [self.eval_step(self.params, self.batch(b)) for b in self.eval_loader.epoch_batches()]
        loss_sum, count = (sum(float(x[i]) for x in sums) for i in (0, 1))
        return loss_sum / max(count, 1.0)


def compile_steps(model: Llama, tx: optax.GradientTransformation, mesh, accum_steps: int = 1):
    """(graphdef, rest, params, opt_state, train_step, eval_step): params (a pure dict) and optimizer
    state placed per the params' logical axes, and the two steps jitted once with those shardings in
    and out, the batch split over data x fsdp, params and optimizer state donated."""
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    param_sh = nnx.to_pure_dict(logical_sharding(state, mesh))
    params = jax.device_put(nnx.to_pure_dict(state), param_sh)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_sh = optax.tree_map_params(tx, lambda _, sh: sh, jax.eval_shape(tx.init, params), param_sh,
                                   transform_non_params=lambda _: replicated)
    batch_sh = NamedSharding(mesh, BATCH_SPEC)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
        train_step = jax.jit(make_train_step(graphdef, rest, tx, accum_steps),
                             in_shardings=(param_sh, opt_sh, batch_sh), out_shardings=(param_sh, opt_sh, replicated),
                             donate_argnums=(0, 1))
        eval_step = jax.jit(make_eval_step(graphdef, rest), in_shardings=(param_sh, batch_sh),
                            out_shardings=replicated)
    return graphdef, rest, params, opt_state, train_step, eval_step


def setup(cfg: SFTConfig) -> Run:
    """Mesh, data, model, optimizer and the two jitted steps, with explicit shardings and donation."""
    mesh = build_mesh(cfg)
    records = load_data(cfg)
    model, config, tokenizer = build_model(cfg, records, mesh)
    loader, eval_loader = make_loaders(cfg, tokenizer, records)
    steps = total_steps(cfg, loader)
    tx = make_optimizer(cfg, steps)

    compiled = compile_steps(model, tx, mesh, cfg.grad_accum_steps)
    return Run(cfg, mesh, *compiled, loader, eval_loader, config, tokenizer, steps)


# Fields that fix which rows step n trains on (the split, the packing, the order, the batch): a checkpoint's
# data position means nothing under other values. The rest may change on resume: the run's length
# (max_steps, epochs, stop_after), how the batch is computed (grad_accum_steps sums to the same update,
# mesh, remat), bookkeeping (log/eval/checkpoint intervals, outputs) and the optimiser's settings.
# Paths (model, data, out) are not compared: files may move between machines.
DATA_STREAM_FIELDS = ("preset", "max_length", "packing", "eval_fraction", "eval_count", "seed", "global_batch_size")


def check_resumable(saved: dict, cfg: SFTConfig) -> None:
    """ConfigError naming every data-stream field whose value in ``cfg`` differs from ``saved`` (the
    checkpointed run's config as a dict)."""
    current = dataclasses.asdict(cfg)
    differ = [f"{k} {saved[k]!r} -> {current[k]!r}"
              for k in DATA_STREAM_FIELDS if k in saved and saved[k] != current[k]]
    if differ:
        raise ConfigError(f"cannot resume: the checkpoint was trained with other data settings ({', '.join(differ)}); "
                          f"use the checkpoint's values or a new --out")


def restore(run: Run, ckpt: Checkpointer) -> None:
    """Loads params, optimizer state, step and data position from the newest checkpoint into ``run``;
    a ConfigError when the current config would read another data stream (``check_resumable``)."""
    arrays, meta = ckpt.restore(abstract_like({"params": run.params, "opt_state": run.opt_state}))
    check_resumable(meta.get("config", {}), run.cfg)
    run.params, run.opt_state = arrays["params"], arrays["opt_state"]
    run.step = int(meta["step"])
    run.loader.set_position(meta["data_position"])
    log.info("resumed from step %d (data position %s)", run.step, meta["data_position"])


def save(run: Run, ckpt: Checkpointer) -> None:
    meta = {"step": run.step, "data_position": run.loader.position, "config": dataclasses.asdict(run.cfg)}
    ckpt.save(run.step, {"params": run.params, "opt_state": run.opt_state}, meta)


class Throughput:
    """tokens/s (all positions of the batch, padding included: what the chips computed) and MFU between
    log points. The first interval after (re)starting or evaluating is not timed: it compiles."""

    def __init__(self, cfg: SFTConfig, config: LlamaConfig):
        self.tokens_per_step = cfg.global_batch_size * cfg.max_length
        self.flops_per_token = config.flops_per_token(cfg.max_length)
        self.peak = peak_flops()
        self.reset()

    def reset(self) -> None:
        self.t, self.steps = None, 0

    def measure(self, steps: int) -> dict:
        now, out = time.perf_counter(), {}
        if self.t is not None:
            out["tokens_per_s"] = self.tokens_per_step * (steps - self.steps) / (now - self.t)
            out["mfu"] = mfu(self.flops_per_token, out["tokens_per_s"], jax.device_count(), self.peak)
        self.t, self.steps = now, steps
        return out


def _progress(cfg: SFTConfig, run: Run):
    if not cfg.progress or jax.process_index() != 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=run.total_steps, initial=run.step, desc="sft", dynamic_ncols=True)


def _postfix(m: dict) -> str:
    parts = [f"loss {m['loss']:.4f}"]
    if "tokens_per_s" in m:
        parts.append(f"{m['tokens_per_s']:,.0f} tok/s")
        parts.append("MFU n/a" if m.get("mfu") is None else f"MFU {100 * m['mfu']:.1f}%")
    return ", ".join(parts)


def train(cfg: SFTConfig) -> dict:
    """Runs SFT per ``cfg``; returns the last logged metrics (with the final eval loss when there is one)."""
    out = pathlib.Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run = setup(cfg)
    ckpt = Checkpointer(cfg.checkpoint_dir or out / "checkpoints", keep=cfg.keep_checkpoints,
                        async_save=cfg.async_checkpoint)
    if cfg.resume and ckpt.latest_step() is not None:
        restore(run, ckpt)
    elif cfg.resume:
        log.info("--resume: no checkpoint in %s yet, starting from step 0", ckpt.manager.directory)
    writer = MetricsWriter(out, tensorboard=cfg.tensorboard, truncate_after=run.step)
    speed, bar, last = Throughput(cfg, run.config), _progress(cfg, run), {}
    stop = min(run.total_steps, run.step + cfg.stop_after) if cfg.stop_after else run.total_steps
    every = lambda n: n and run.step % n == 0  # noqa: E731
    with jax.set_mesh(run.mesh):
        while run.step < stop:
            batch = run.batch(next(run.loader))
            run.params, run.opt_state, metrics = run.train_step(run.params, run.opt_state, batch)
            run.step += 1
            if every(cfg.log_every) or run.step == stop:
                last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                last |= speed.measure(run.step) | {"epoch": run.loader.epoch}
                writer.write(run.step, {k: v for k, v in last.items() if v is not None})
                if bar is not None:
                    bar.update(run.step - bar.n)
                    bar.set_postfix_str(_postfix(last))
            finished = run.step == run.total_steps
            if run.eval_loader is not None and (every(cfg.eval_every) or finished):
                last["eval_loss"] = run.evaluate()
                writer.write(run.step, {"eval_loss": last["eval_loss"]})
                speed.reset()
            if every(cfg.checkpoint_every) or run.step == stop:
                save(run, ckpt)
    ckpt.close()
    writer.close()
    if bar is not None:
        bar.close()
    if cfg.export and run.step == run.total_steps:
        model = nnx.merge(run.graphdef, run.params, run.rest)
        save_pretrained(model, out / "final", config=run.config, tokenizer=run.tokenizer)
    if jax.process_index() == 0:
        atomic_write_json(out / "summary.json", {"step": run.step, **last})
    return {"step": run.step, **last}
