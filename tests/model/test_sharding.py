"""Mesh construction, the logical-axis table, and a checkpoint loaded onto an 8-device CPU mesh."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from teamsrl_jax.model import Llama, LlamaConfig, init_model
from teamsrl_jax.model.hf_io import load_pretrained
from teamsrl_jax.model.sharding import (MeshConfig, host_local_batch_to_global, logical_sharding, logical_to_pspec,
                                        make_mesh, maybe_initialize_distributed, shard_activation, shard_model)

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")


def test_mesh_config_parse_and_resolve():
    assert MeshConfig.parse("data=2,fsdp=2,tensor=2") == MeshConfig(2, 2, 2)
    assert MeshConfig.parse("data=1,fsdp=-1") == MeshConfig(data=1, fsdp=-1, tensor=1)
    assert MeshConfig().resolve(8) == (8, 1, 1)
    assert MeshConfig(data=2, fsdp=-1, tensor=2).resolve(8) == (2, 2, 2)
    with pytest.raises(ValueError, match="at most one axis may be -1, got data, fsdp"):
        MeshConfig(data=-1, fsdp=-1).resolve(8)
    with pytest.raises(ValueError, match="data=2 x fsdp=2 x tensor=1 = 4 does not match the 8"):
        MeshConfig(2, 2, 1).resolve(8)
    with pytest.raises(ValueError, match=r"MeshConfig.data=-1: 8 devices are not divisible by the other axes' product 3"):
        MeshConfig(tensor=3).resolve(8)
    with pytest.raises(ValueError, match=r"MeshConfig.tensor=0"):
        MeshConfig(tensor=0).resolve(8)
    with pytest.raises(ValueError, match="expected one of"):
        MeshConfig.parse("model=2")


def test_logical_rules():
    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    assert logical_to_pspec(("embed", "heads", "head_dim"), (64, 4, 16), sizes) == P("fsdp", "tensor", None)
    assert logical_to_pspec(("vocab", "embed"), (128, 64), sizes) == P("tensor", "fsdp")
    # activations: batch takes data x fsdp, so embed stays replicated
    assert logical_to_pspec(("batch", "length", "embed"), (4, 16, 64), sizes) == P(("data", "fsdp"), None, None)
    # a batch that data x fsdp does not divide falls back to data; a dim the axis does not divide is replicated
    assert logical_to_pspec(("batch", "length", "kv_heads"), (2, 16, 3), sizes) == P("data", None, None)


def test_shard_activation_is_a_no_op_without_mesh():
    x = np.ones((4, 8), np.float32)
    assert shard_activation(x, ("batch", "embed")) is x


def test_maybe_initialize_distributed_single_host(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert maybe_initialize_distributed() is False


@needs_8
def test_host_local_batch_to_global():
    mesh = make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"))
    batch = {"tokens": np.arange(32).reshape(8, 4)}
    out = host_local_batch_to_global(batch, mesh)
    assert out["tokens"].sharding == NamedSharding(mesh, P(("data", "fsdp")))
    np.testing.assert_array_equal(np.asarray(out["tokens"]), batch["tokens"])
    assert out["tokens"].addressable_shards[0].data.shape == (2, 4)


@needs_8
def test_load_onto_8_device_mesh_matches_single_device(hf_checkpoint, token_ids):
    _, path = hf_checkpoint("llama", num_key_value_heads=2)
    single, _, _ = load_pretrained(path)
    mesh = make_mesh(MeshConfig.parse("data=2,fsdp=2,tensor=2"))
    model, _, _ = load_pretrained(path, mesh=mesh)

    expected_specs = {
        "embed_tokens": P("tensor", "fsdp"), "q_proj": P("fsdp", "tensor", None), "k_proj": P("fsdp", "tensor", None),
        "o_proj": P("tensor", None, "fsdp"), "gate_proj": P("fsdp", "tensor"), "down_proj": P("tensor", "fsdp"),
        "lm_head": P("fsdp", "tensor"), "input_layernorm": P(None), "norm": P(None),
    }
    seen = set()
    for path_, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        module = str(path_[-2])
        if module in expected_specs:
            assert var[...].sharding == NamedSharding(mesh, expected_specs[module]), path_
            seen.add(module)
    assert seen == set(expected_specs)
    q = model.layers[0].self_attn.q_proj.kernel[...]
    assert q.shape == (64, 4, 16) and {s.data.shape for s in q.addressable_shards} == {(32, 2, 16)}

    ids = np.concatenate([token_ids, token_ids[::-1]])  # batch 4 = data x fsdp
    with jax.set_mesh(mesh):
        sharded_ids = jax.device_put(ids, NamedSharding(mesh, P(("data", "fsdp"))))
        logits = nnx.jit(lambda m, x: m(x))(model, sharded_ids)
    assert logits.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_allclose(np.asarray(logits), np.asarray(single(ids)), atol=1e-5)


@needs_8
def test_shard_model_and_logical_sharding_tree():
    config = LlamaConfig.preset("tiny", vocab_size=300, num_hidden_layers=1)
    abstract = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    shardings = logical_sharding(nnx.state(abstract), mesh)
    flat = dict(nnx.to_flat_state(shardings))
    assert flat[("layers", 0, "mlp", "up_proj", "kernel")].get_value().spec == P("fsdp", "tensor")
    model = shard_model(Llama(config, rngs=nnx.Rngs(0)), mesh)
    assert model.embed_tokens.embedding[...].sharding.spec == P("tensor", "fsdp")
    created = init_model(config, seed=0, mesh=mesh)  # initialised in place, shard by shard
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(nnx.state(created))):
        assert a[...].sharding == b[...].sharding, path
        np.testing.assert_allclose(np.asarray(a[...]), np.asarray(b[...]), atol=1e-7)
