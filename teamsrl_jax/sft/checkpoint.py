"""Orbax checkpoints of a run: arrays (params, optimizer state) plus JSON metadata (step, data position,
config). The train step draws no random numbers, so that is all an exact resume needs.
Asynchronous where enabled; the newest ``keep`` are kept."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
    """``save(step, arrays, meta)`` / ``restore(abstract_arrays) -> (arrays, meta)`` over a CheckpointManager."""

    def __init__(self, directory, *, keep: int = 2, async_save: bool = True):
        """``directory``: a local path or any epath URL orbax can write (gs://... on TPU VMs)."""
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               create=True)
        directory = str(directory)
        path = epath.Path(directory if "://" in directory else os.path.abspath(directory))
        self.manager = ocp.CheckpointManager(path, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, arrays, meta: dict) -> None:
        """Start saving (returns before the write finishes when async); a step already saved is skipped."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                        meta=ocp.args.JsonSave(meta)))

    def restore(self, abstract_arrays, step: int | None = None):
        """Arrays laid out like ``abstract_arrays`` (ShapeDtypeStructs carrying shardings) and the metadata."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.manager.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract_arrays),
                                                                 meta=ocp.args.JsonRestore()))
        return out["arrays"], out["meta"]

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree):
    """ShapeDtypeStructs with the shardings of ``tree`` (the target layout of a restore)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
