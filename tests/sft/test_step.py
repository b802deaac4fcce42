"""The jitted SFT step: packed == unpacked loss, 8-device mesh == one device, accumulation == one big
batch, and a tiny model overfits a small batch."""

import jax
import numpy as np
import pytest
from flax import nnx

from teamsrl_jax.model import Llama, LlamaConfig
from teamsrl_jax.model.sharding import MeshConfig, host_local_batch_to_global, make_mesh
from teamsrl_jax.sft import data
from teamsrl_jax.sft.config import SFTConfig
from teamsrl_jax.sft.optim import make_optimizer
from teamsrl_jax.sft.records import parse_record
from teamsrl_jax.sft.step import loss_sums
from teamsrl_jax.sft.trainer import BATCH_SPEC, compile_steps

from .conftest import make_records

SEQ = 128


@pytest.fixture(scope="module")
def config(tokenizer):
    return LlamaConfig.preset("tiny", vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)


@pytest.fixture(scope="module")
def examples(tokenizer):
    return data.encode(tokenizer, [parse_record(r, i) for i, r in enumerate(make_records(24))], SEQ)


def fresh_model(config):
    return Llama(config, rngs=nnx.Rngs(0))  # same weights every time; train steps donate their inputs


def one_device_mesh():
    return make_mesh(MeshConfig(data=1), devices=jax.devices()[:1])


def global_batch(examples, rows=8):
    loader = data.PackedLoader(examples, seq_len=SEQ, global_batch=rows, seed=0)
    return next(loader)


def adamw(lr, steps=10):
    return make_optimizer(SFTConfig(learning_rate=lr, warmup_steps=0, lr_schedule="constant"), steps)


def test_packed_loss_equals_unpacked(config, examples):
    model = fresh_model(config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rows = data.pack_order([len(e.tokens) for e in examples[:6]], range(6), SEQ, packing=True)
    assert len(rows) < 6, "the examples should share rows"
    packed = data.make_rows(examples, rows, SEQ)
    unpacked = data.make_rows(examples, [[i] for i in range(6)], SEQ)
    f = jax.jit(lambda b: loss_sums(nnx.to_pure_dict(params), graphdef, rest, b))
    (lp, np_), (lu, nu) = f(packed), f(unpacked)
    assert float(np_) == float(nu) == sum(examples[i].num_loss_tokens for i in range(6))
    np.testing.assert_allclose(float(lp) / float(np_), float(lu) / float(nu), rtol=1e-5)


@pytest.fixture(scope="module")
def single_device_step(config, examples):
    """(params before, params after, metrics) of one AdamW step on one device."""
    model = fresh_model(config)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    mesh = one_device_mesh()
    _, _, params, opt_state, train_step, _ = compile_steps(model, adamw(1e-4), mesh)
    with jax.set_mesh(mesh):
        batch = host_local_batch_to_global(global_batch(examples), mesh, BATCH_SPEC)
        params, _, metrics = train_step(params, opt_state, batch)
    return before, jax.tree.map(np.asarray, params), jax.device_get(metrics)


def _assert_same_step(want, got):
    before, params_a, metrics_a = want
    params_b, metrics_b = got
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(before)))
    assert moved > 5e-5, "the step should move the weights well beyond the tolerance"
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    for k in ("loss", "grad_norm", "loss_tokens"):
        np.testing.assert_allclose(metrics_a[k], metrics_b[k], rtol=1e-5)


def test_mesh_2x2x2_step_equals_single_device(config, examples, single_device_step):
    assert jax.device_count() >= 8, "tests/conftest.py forces 8 CPU devices"
    mesh = make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"), devices=jax.devices()[:8])
    _, _, params, opt_state, train_step, _ = compile_steps(fresh_model(config), adamw(1e-4), mesh)
    assert not all(x.sharding.is_fully_replicated for x in jax.tree.leaves(params)), \
        "weights should be split over the mesh"
    with jax.set_mesh(mesh):
        batch = host_local_batch_to_global(global_batch(examples), mesh, BATCH_SPEC)
        params, _, metrics = train_step(params, opt_state, batch)
    _assert_same_step(single_device_step, (jax.tree.map(np.asarray, params), jax.device_get(metrics)))


def test_accumulation_2x_half_equals_one_full_batch(config, examples, single_device_step):
    mesh = one_device_mesh()
    _, _, params, opt_state, train_step, _ = compile_steps(fresh_model(config), adamw(1e-4), mesh, accum_steps=2)
    with jax.set_mesh(mesh):
        batch = host_local_batch_to_global(global_batch(examples), mesh, BATCH_SPEC)
        params, _, metrics = train_step(params, opt_state, batch)
    _assert_same_step(single_device_step, (jax.tree.map(np.asarray, params), jax.device_get(metrics)))


def test_tiny_model_overfits_a_small_batch(config, examples):
    mesh = one_device_mesh()
    _, _, params, opt_state, train_step, _ = compile_steps(fresh_model(config), adamw(1e-2, 40), mesh)
    with jax.set_mesh(mesh):
        batch = host_local_batch_to_global(global_batch(examples[:8], rows=4), mesh, BATCH_SPEC)
        losses = []
        for _ in range(40):
            params, opt_state, metrics = train_step(params, opt_state, batch)
            losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] / 10, losses[::5]
