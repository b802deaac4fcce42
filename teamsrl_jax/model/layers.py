"""Small building blocks: a projection with logical axes, RMSNorm and the SwiGLU MLP.

Parameters are stored in ``param_dtype`` (fp32 master weights) and cast to the compute ``dtype`` at
use. Every parameter is an ``nnx.Param`` carrying logical axis names in its ``out_sharding`` metadata
(see sharding.LOGICAL_AXIS_RULES). Eager sharding is off: modules can be built without a mesh and are
placed afterwards (``sharding.shard_model`` or ``jax.jit(..., out_shardings=...)``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from teamsrl_jax.model.sharding import shard_activation

INIT_STD = 0.02  # HF initializer_range


def param(value: jax.Array, axes: tuple[str | None, ...]) -> nnx.Param:
    """An nnx.Param annotated with logical axes (one name per dimension)."""
    assert len(axes) == value.ndim, (axes, value.shape)
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


class Proj(nnx.Module):
    """y = x·kernel (+ bias), contracting x's trailing ``in_shape`` dims: kernel [*in_shape, *out_shape]."""

    def __init__(self, in_shape, out_shape, axes, *, bias=False, bias_axes=None, dtype="float32",
                 param_dtype="float32", rngs: nnx.Rngs):
        shape = (*in_shape, *out_shape)
        init = jax.random.normal(rngs.params(), shape, param_dtype) * INIT_STD
        self.kernel = param(init, axes)
        self.bias = param(jnp.zeros(out_shape, param_dtype), bias_axes or axes[len(in_shape):]) if bias else None
        self.n_in = len(in_shape)
        self.dtype = dtype

    def __call__(self, x):
        # One plain [tokens, in] x [in, out] matmul: on the CPU the backward then needs no transposed
        # copies of activations (a tensordot over the 3-d/4-d shapes makes XLA materialise several).
        kernel = self.kernel[...].astype(self.dtype)
        in_shape, out_shape = kernel.shape[:self.n_in], kernel.shape[self.n_in:]
        lead = x.shape[:x.ndim - self.n_in]
        x = x.astype(self.dtype).reshape(-1, math.prod(in_shape))
        y = matmul_2d(x, kernel.reshape(math.prod(in_shape), math.prod(out_shape))).reshape(*lead, *out_shape)
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


def matmul_2d(x, w_IxO, preferred_element_type=None):
    """x [..., I] · w [I, O] -> [..., O] as one 2-d matmul over the flattened leading dims."""
    y = jnp.matmul(x.reshape(-1, w_IxO.shape[0]), w_IxO, preferred_element_type=preferred_element_type)
    return y.reshape(*x.shape[:-1], w_IxO.shape[1])


class RMSNorm(nnx.Module):
    """x / rms(x) · scale, with the statistics in float32 (as HF Llama does)."""

    def __init__(self, size: int, eps: float, *, dtype="float32", param_dtype="float32"):
        self.scale = param(jnp.ones((size,), param_dtype), ("norm",))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x_BxLxD):
        x = x_BxLxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return x.astype(self.dtype) * self.scale[...].astype(self.dtype)


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    def __init__(self, hidden: int, intermediate: int, *, dtype="float32", param_dtype="float32", rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Proj((hidden,), (intermediate,), ("embed", "mlp"), **kw)
        self.up_proj = Proj((hidden,), (intermediate,), ("embed", "mlp"), **kw)
        self.down_proj = Proj((intermediate,), (hidden,), ("mlp", "embed"), **kw)

    def __call__(self, x_BxLxD):
        h_BxLxF = jax.nn.silu(self.gate_proj(x_BxLxD)) * self.up_proj(x_BxLxD)
        h_BxLxF = shard_activation(h_BxLxF, ("batch", "length", "mlp"))
        return self.down_proj(h_BxLxF)


class Embed(nnx.Module):
    """Token embedding table [V, D]; ``attend`` reuses it as a tied LM head."""

    def __init__(self, vocab: int, hidden: int, *, dtype="float32", param_dtype="float32", rngs: nnx.Rngs):
        init = jax.random.normal(rngs.params(), (vocab, hidden), param_dtype) * INIT_STD
        self.embedding = param(init, ("vocab", "embed"))
        self.dtype = dtype

    def __call__(self, ids_BxL):
        return jnp.take(self.embedding[...], ids_BxL, axis=0).astype(self.dtype)

    def attend(self, x_BxLxD):
        """Logits [..., V] in float32 against the embedding rows."""
        return jnp.einsum("...D,VD->...V", x_BxLxD, self.embedding[...].astype(self.dtype),
                          preferred_element_type=jnp.float32)

