"""Throughput bookkeeping (tokens/s, MFU) and the metrics sinks (metrics.jsonl, optional TensorBoard)."""

from __future__ import annotations

import logging
import pathlib

import jax

from teamsrl_jax.fileio import JsonlLog

# Dense bf16 peak FLOP/s per device (no sparsity), matched as lowercase substrings of device_kind.
PEAK_FLOPS = (
    ("h100", 989e12), ("h200", 989e12), ("b200", 2250e12), ("a100", 312e12),
    ("v6 lite", 918e12), ("v6e", 918e12), ("v5p", 459e12), ("v5 lite", 197e12), ("v5e", 197e12), ("v4", 275e12),
)
log = logging.getLogger(__name__)


def peak_flops(device: jax.Device | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device from the table above; None (MFU n/a) for CPUs and unknown chips."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    return next((flops for key, flops in PEAK_FLOPS if key in kind), None)


def mfu(flops_per_token: float, tokens_per_s: float, num_devices: int, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the mesh's peak (None when the peak is unknown)."""
    if not peak:
        return None
    return flops_per_token * tokens_per_s / (peak * num_devices)


class MetricsWriter:
    """Appends one JSON object per call to ``out/metrics.jsonl`` (a :class:`~teamsrl_jax.fileio.JsonlLog`);
    mirrors scalars to TensorBoard when ``tensorboardX`` is importable (flax's writer needs TensorFlow,
    which is not installed here). Only process 0 writes; the others' calls do nothing."""

    def __init__(self, out: str | pathlib.Path, *, tensorboard: bool = True, truncate_after: int | None = None):
        """``truncate_after``: drop the records past this step first (a resumed run writes them again),
        and a torn last line a kill left behind."""
        self.log = JsonlLog(pathlib.Path(out) / "metrics.jsonl")
        self.enabled = jax.process_index() == 0
        if self.enabled and truncate_after is not None:
            self.log.truncate("step", truncate_after + 1)
        self.tb = None
        if tensorboard and self.enabled:
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(str(pathlib.Path(out) / "tensorboard"))
            except ImportError:
                log.info("tensorboardX is not installed: metrics go to metrics.jsonl only")

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.log.append({"step": step, **metrics})
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
