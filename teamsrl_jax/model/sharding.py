"""Device mesh, logical-axis rules and the helpers that place arrays on the mesh.

One mesh with three axes, MaxText/EasyLM style:
  data   — pure data parallelism (replicated weights, split batch)
  fsdp   — batch split *and* weights split along their "embed" dimension (ZeRO-3-like)
  tensor — Megatron-style tensor parallelism over heads / MLP width / vocabulary

Every parameter carries logical axis names (``out_sharding`` metadata set by ``nnx.with_partitioning``
style annotations in ``llama.py``); ``LOGICAL_AXIS_RULES`` is the one table that maps them to mesh axes.
A logical name takes the first rule whose mesh axes are still unused in that array's spec and whose
size divides the dimension; otherwise the dimension stays replicated. So an activation
("batch", "length", "embed") is split over data×fsdp on its batch and replicated on embed, while a
weight ("embed", "mlp") is split fsdp × tensor.

The mesh uses ``AxisType.Auto`` axes: plain ``jax.jit`` with ``NamedSharding`` in/out shardings works,
and the XLA partitioner propagates shardings through the model. Activation constraints inside the
model (``shard_activation``) only act under ``jax.set_mesh(mesh)``; without a mesh they are no-ops.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Shapes (B batch, L length, D hidden, N query heads, K kv heads, H head dim, F mlp, V vocab):
#   embed_tokens.embedding [V, D]        ("vocab", "embed")
#   q_proj.kernel [D, N, H]   bias [N, H] ("embed", "heads", "head_dim")
#   k_proj/v_proj.kernel [D, K, H]        ("embed", "kv_heads", "head_dim")
#   o_proj.kernel [N, H, D]               ("heads", "head_dim", "embed")
#   gate_proj/up_proj.kernel [D, F]       ("embed", "mlp");  down_proj.kernel [F, D] ("mlp", "embed")
#   *_layernorm.scale, norm.scale [D]     ("norm",)
#   lm_head.kernel [D, V]                 ("embed", "vocab")
#   activations [B, L, D] / [B, L, N, H] / [B, L, F] / logits [B, L, V]: ("batch", "length", ...)
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("batch", "data"),          # when data x fsdp does not divide the batch
    ("length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("layers", None),
)


# -- mesh -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class MeshConfig:
    data: int = -1
    """Data-parallel axis size; -1 = whatever devices the other axes leave."""
    fsdp: int = 1
    """Fully-sharded data-parallel axis size (batch and weights split); -1 = fill."""
    tensor: int = 1
    """Tensor-parallel axis size (heads, MLP, vocab split); -1 = fill."""

    @classmethod
    def parse(cls, spec: str) -> MeshConfig:
        """From "data=2,fsdp=2,tensor=2" (missing axes keep their defaults; "" gives the defaults)."""
        sizes = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            if name.strip() not in MESH_AXES or not value.strip().lstrip("-").isdigit():
                raise ValueError(f"mesh spec item {item!r}: expected one of {MESH_AXES} '=' integer")
            sizes[name.strip()] = int(value)
        return cls(**sizes)

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        """Concrete (data, fsdp, tensor) sizes for ``num_devices``; errors name the offending field."""
        sizes = dict(data=self.data, fsdp=self.fsdp, tensor=self.tensor)
        for name, size in sizes.items():
            if size == 0 or size < -1:
                raise ValueError(f"MeshConfig.{name}={size}: must be a positive size or -1 (fill)")
        fill = [name for name, size in sizes.items() if size == -1]
        if len(fill) > 1:
            raise ValueError(f"MeshConfig: at most one axis may be -1, got {', '.join(fill)}")
        fixed = math.prod(size for size in sizes.values() if size != -1)
        if fill:
            if num_devices % fixed:
                raise ValueError(f"MeshConfig.{fill[0]}=-1: {num_devices} devices are not divisible by "
                                 f"the other axes' product {fixed}")
            sizes[fill[0]] = num_devices // fixed
        elif fixed != num_devices:
            raise ValueError(f"MeshConfig data={self.data} x fsdp={self.fsdp} x tensor={self.tensor} = "
                             f"{fixed} does not match the {num_devices} available devices")
        return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(config: MeshConfig | None = None, devices=None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh with Auto axes over ``devices`` (default: all devices)."""
    config = config or MeshConfig()
    devices = list(jax.devices() if devices is None else devices)
    shape = config.resolve(len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


# -- logical axes -> partition specs ------------------------------------------------------------------
def logical_to_pspec(axes, shape=None, mesh_axis_sizes: dict[str, int] | None = None) -> PartitionSpec:
    """PartitionSpec for logical ``axes`` under LOGICAL_AXIS_RULES. With ``mesh_axis_sizes`` only mesh
    axes of that mesh are used, and with ``shape`` too a dimension stays replicated when the mesh axes'
    product does not divide it."""
    used: set[str] = set()
    spec = []
    for dim, name in enumerate(axes):
        choice = None
        for rule_name, mesh_axes in LOGICAL_AXIS_RULES:
            if rule_name != name or mesh_axes is None:
                continue
            mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
            if mesh_axis_sizes is not None:
                mesh_axes = tuple(a for a in mesh_axes if a in mesh_axis_sizes)
            if not mesh_axes or used.intersection(mesh_axes):
                continue
            if shape is not None and mesh_axis_sizes is not None:
                if shape[dim] % math.prod(mesh_axis_sizes[a] for a in mesh_axes):
                    continue
            choice = mesh_axes
            break
        if choice:
            used.update(choice)
        spec.append(None if not choice else choice[0] if len(choice) == 1 else choice)
    return PartitionSpec(*spec)


def variable_axes(variable: nnx.Variable) -> tuple | None:
    """The logical axis names annotated on an nnx Variable (flax 0.12 ``out_sharding``; older names too)."""
    metadata = variable.get_metadata()
    for key in ("out_sharding", "sharding_names", "sharding"):
        if metadata.get(key):
            return tuple(metadata[key])
    return None


def _mesh_sizes(mesh) -> dict[str, int]:
    return dict(zip(mesh.axis_names, mesh.axis_sizes))


def logical_sharding(state: Any, mesh: Mesh) -> Any:
    """The NamedSharding of every leaf of an nnx State / abstract state / module, from the params'
    logical axes; same tree structure (Variables keep their type and hold the sharding). Leaves
    without annotation are replicated."""
    sizes = _mesh_sizes(mesh)

    def one(x):
        if isinstance(x, nnx.Variable):
            axes = variable_axes(x)
            spec = logical_to_pspec(axes, x.shape, sizes) if axes else PartitionSpec()
            return x.replace(NamedSharding(mesh, spec))
        return NamedSharding(mesh, PartitionSpec())

    if isinstance(state, nnx.Module):
        state = nnx.state(state)
    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh) -> nnx.Module:
    """Moves a model's state onto ``mesh`` per its logical axes (in place; also returned)."""
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, logical_sharding(state, mesh)))
    return model


def shard_activation(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
    """Constrains an activation's sharding by logical axes when a mesh is set (``jax.set_mesh``);
    otherwise returns ``x`` unchanged."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_pspec(axes, x.shape, _mesh_sizes(mesh)))


# -- multi-host -------------------------------------------------------------------------------------
def maybe_initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize()`` when the environment looks multi-process, and returns
    whether it did. Detected: an explicit coordinator (JAX_COORDINATOR_ADDRESS, with
    JAX_NUM_PROCESSES and JAX_PROCESS_ID, or COORDINATOR_ADDRESS), a SLURM job with more than one
    task (SLURM_NTASKS > 1), a TPU pod slice (TPU_WORKER_HOSTNAMES with more than one host) or Open
    MPI (OMPI_COMM_WORLD_SIZE > 1). jax auto-detects the cluster details in those cases. Call it
    before anything touches devices; single-host runs are left alone."""
    env = os.environ
    address = env.get("JAX_COORDINATOR_ADDRESS") or env.get("COORDINATOR_ADDRESS")
    multi = bool(address) or int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    multi = multi or len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
    if not multi:
        return False
    kwargs = {}
    if address:
        kwargs["coordinator_address"] = address
        if "JAX_NUM_PROCESSES" in env:
            kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
        if "JAX_PROCESS_ID" in env:
            kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    return True


def host_local_batch_to_global(batch: Any, mesh: Mesh, pspec: PartitionSpec | None = None) -> Any:
    """Assembles each process's slice of the batch (a pytree of numpy arrays, leading dim = this
    host's share of the global batch) into global arrays sharded by ``pspec`` (default: the batch dim
    over ("data", "fsdp"))."""
    pspec = PartitionSpec(("data", "fsdp")) if pspec is None else pspec
    sharding = NamedSharding(mesh, pspec)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
