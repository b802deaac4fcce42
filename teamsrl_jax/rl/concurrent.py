"""The TRPO policy step and the value fit at the same time, on two CPU devices (one per core).

Both only read the batch, so nothing orders them; on a GPU they queue on one device anyway, but on a multi-core
CPU running them side by side nearly halves an update. XLA's intra-op threads gain little at these sizes, and on
a virtual machine every hand-off between cores costs more than a small op, so each computation is launched on its
own device from a thread pinned to its own core, with synchronous dispatch (it then runs on that thread, apart from
the few ops XLA hands to its own thread pool)::

    configure_cpu_devices()                    # before JAX's first computation: one CPU device per core
    update = ConcurrentUpdate(policy_def, value_def, cfg)
    policy, value, value_opt, metrics = update(policy, value, value_opt, TRPOBatch(obs, actions, adv), targets, key)

With fewer than two devices ``ConcurrentUpdate`` runs the two jitted functions one after the other. Results are
the same either way (the two computations share no state). The policy and the metrics of its step are returned on
the first device, the value parameters, optimiser state and value metrics on the second, where the next call wants them
(``jax.device_put`` them elsewhere to use them with other arrays).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Any, Callable, Sequence

import jax
from flax import nnx

from teamsrl_jax.rl.config import RLConfig
from teamsrl_jax.rl.trpo import TRPOBatch, make_trpo_update
from teamsrl_jax.rl.update import with_value_metrics
from teamsrl_jax.rl.value_fit import make_value_fit


def available_cores() -> list[int]:
    """The CPU cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def configure_cpu_devices(num: int | None = None, async_dispatch: bool = False) -> int:
    """Expose ``num`` XLA CPU devices (default: one per available core), each computation running on the thread
    that calls it unless ``async_dispatch``. Must come before JAX creates its backends; returns ``num``."""
    num = num or len(available_cores())
    from jax._src import xla_bridge  # the public config raises only for the device count, not for dispatch

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("configure_cpu_devices must run before JAX's first computation (backends already exist)")
    jax.config.update("jax_num_cpu_devices", num)
    jax.config.update("jax_cpu_enable_async_dispatch", async_dispatch)
    return num


class CoreWorkers:
    """One worker thread per core (the first ``n`` available), each pinned to its core where the OS allows.

    ``run([fn0, fn1, ...])`` calls ``fn_i()`` on worker i, all at once, and returns their results in order; an
    exception in any is raised here after all have finished.
    """

    def __init__(self, n: int):
        cores = available_cores()
        pin = hasattr(os, "sched_setaffinity") and len(cores) >= n
        self._pools = [concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"teamsrl-core{i}",
            initializer=functools.partial(os.sched_setaffinity, 0, {cores[i]}) if pin else None) for i in range(n)]

    def run(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        if len(fns) > len(self._pools):
            raise ValueError(f"{len(fns)} functions for {len(self._pools)} workers")
        futures = [pool.submit(fn) for pool, fn in zip(self._pools, fns)]
        concurrent.futures.wait(futures)
        return [f.result() for f in futures]

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True)


def _block(x64: bool, fn: Callable, *args):
    with jax.enable_x64(x64):  # a thread-local setting: carry the caller's over to the worker
        return jax.block_until_ready(fn(*args))


class ConcurrentUpdate:
    """``update(policy, value, value_opt, batch, targets, key) -> (policy, value, value_opt, metrics)``: the TRPO
    step of ``cfg.trpo`` on ``batch`` and the value fit of ``cfg.value`` to ``targets`` (obs = ``batch.obs``), at
    once on ``devices[0]`` and ``devices[1]`` (default: the first two CPU devices when JAX runs on the CPU, else
    the default device alone), or one after the other where there is only one. Metrics are the TRPO ones plus
    ``value_loss_before``, ``value_loss_after``, ``value_steps``."""

    def __init__(self, policy_def: nnx.GraphDef, value_def: nnx.GraphDef, cfg: RLConfig,
                 devices: Sequence[jax.Device] | None = None):
        if devices is None:
            devices = jax.local_devices()[:2] if jax.default_backend() == "cpu" else jax.local_devices()[:1]
        self.devices = list(devices)[:2]
        self._policy_step = make_trpo_update(policy_def, cfg.trpo)
        self._value_fit = make_value_fit(value_def, cfg.value)
        self._workers = CoreWorkers(2) if self.concurrent else None

    @property
    def concurrent(self) -> bool:
        return len(self.devices) >= 2

    def __call__(self, policy: nnx.State, value: nnx.State, value_opt: Any, batch: TRPOBatch, targets: jax.Array,
                 key: jax.Array):
        if self.concurrent:
            d0, d1 = self.devices
            p_args = jax.device_put((policy, TRPOBatch(*batch)), d0)
            v_args = jax.device_put((value, value_opt, batch.obs, targets, key), d1)
            x64 = bool(jax.config.jax_enable_x64)
            (policy, metrics), (value, value_opt, vm) = self._workers.run(
                [functools.partial(_block, x64, self._policy_step, *p_args),
                 functools.partial(_block, x64, self._value_fit, *v_args)])
        else:
            policy, metrics = self._policy_step(policy, TRPOBatch(*batch))
            value, value_opt, vm = self._value_fit(value, value_opt, batch.obs, targets, key)
        return policy, value, value_opt, with_value_metrics(metrics, vm)

    def close(self) -> None:
        """Stop the worker threads (they also stop with the interpreter)."""
        if self._workers is not None:
            self._workers.close()
