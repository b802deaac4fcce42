"""Orbax checkpoints of a policy-training run: the agent pytree, the environment's state, and the iteration.

Orbax writes each step into a temporary folder and renames it when complete, so a kill -9 during a save
leaves the previous checkpoint as the latest one. The agent state is saved as its flat list of leaves and
restored into the structure of a freshly built agent (same config), which keeps this module independent of
how flax names its variables. The environment's state (``InstructionEnv.state_dict``) is split into its
NumPy arrays (saved with the pytree) and everything else (saved as JSON).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _split_arrays(tree: Any, prefix: str = "") -> tuple[Any, dict[str, np.ndarray]]:
    """Replace every ndarray in a nested dict/list by a ``{"__array__": name}`` marker; return both parts."""
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, np.ndarray):
            arrays[path] = node
            return {"__array__": path}
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        return node

    return walk(tree, prefix or "env"), arrays


def _join_arrays(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return np.asarray(arrays[tree["__array__"]])
        return {k: _join_arrays(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_arrays(v, arrays) for v in tree]
    return tree


class RunCheckpointer:
    """Save and restore ``(agent_state, env_state, meta)`` under ``directory`` by iteration number."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_iteration(self) -> int | None:
        return self.manager.latest_step()

    def save(self, iteration: int, agent_state: Any, env_state: dict[str, Any], meta: dict[str, Any]) -> None:
        leaves = {f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(agent_state))}
        env_json, env_arrays = _split_arrays(env_state)
        self.manager.save(iteration, args=ocp.args.Composite(
            agent=ocp.args.StandardSave(leaves),
            env_arrays=ocp.args.StandardSave(env_arrays),
            meta=ocp.args.JsonSave({**meta, "env": env_json, "env_array_keys": sorted(env_arrays)}),
        ))  # synchronous (enable_async_checkpointing=False): the step is complete when save returns

    def restore(self, iteration: int, agent_template: Any, env_template: dict[str, Any]) -> tuple[Any, dict, dict]:
        """Restore into the structure of ``agent_template`` (a freshly built agent's state) and of
        ``env_template`` (a fresh environment's ``state_dict()``, for the array shapes and dtypes)."""
        leaves, treedef = jax.tree_util.tree_flatten(agent_template)
        meta = self.manager.restore(iteration, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        _, env_template_arrays = _split_arrays(env_template)
        if sorted(env_template_arrays) != meta["env_array_keys"]:
            raise ValueError(f"checkpoint {self.directory / str(iteration)} does not match this environment "
                             f"(arrays {meta['env_array_keys']} vs {sorted(env_template_arrays)})")
        target = {f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
        restored = self.manager.restore(iteration, args=ocp.args.Composite(
            agent=ocp.args.StandardRestore(target),
            env_arrays=ocp.args.StandardRestore(env_template_arrays),
        ))
        agent_leaves = [restored["agent"][f"{i:05d}"] for i in range(len(leaves))]
        env_state = _join_arrays(meta.pop("env"), dict(restored["env_arrays"]))
        meta.pop("env_array_keys")
        return jax.tree_util.tree_unflatten(treedef, agent_leaves), env_state, meta

    def restore_agent(self, iteration: int, agent_template: Any) -> tuple[Any, dict]:
        """Only the agent state (into the structure of ``agent_template``) and the run's meta data: what the
        dataset stage needs, with an environment of its own."""
        leaves, treedef = jax.tree_util.tree_flatten(agent_template)
        target = {f"{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
        restored = self.manager.restore(iteration, args=ocp.args.Composite(
            agent=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        found = restored["agent"]
        if sorted(found) != sorted(target):
            raise ValueError(f"checkpoint {self.directory / str(iteration)} holds {len(found)} agent arrays, "
                             f"this policy has {len(target)}")
        meta = dict(restored["meta"])
        for key in ("env", "env_array_keys"):
            meta.pop(key, None)
        return jax.tree_util.tree_unflatten(treedef, [found[f"{i:05d}"] for i in range(len(leaves))]), meta

    def close(self) -> None:
        self.manager.close()
