"""ARC and HellaSwag from TensorFlow Datasets (``ai2_arc``, ``hellaswag``), where a prepared copy is in
``data_dir`` (``TFDS_DATA_DIR`` / ``~/tensorflow_datasets`` by default) or the machine can download one.
Prepared as ``array_record`` and read with ``as_data_source``, so TensorFlow itself is not needed."""

from __future__ import annotations

from typing import Any

_BUILDERS = {"arc_easy": ("ai2_arc/ARC-Easy", "test"), "arc_challenge": ("ai2_arc/ARC-Challenge", "test"),
             "hellaswag": ("hellaswag", "validation")}


def _text(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, dict):
        return {k: _text(v) for k, v in x.items()}
    if hasattr(x, "tolist"):
        return _text(x.tolist())
    if isinstance(x, list):
        return [_text(v) for v in x]
    return x


def _row(name: str, example: dict) -> dict:
    ex = _text(example)
    if name == "hellaswag":  # TFDS names the context "context" (ctx_a and ctx_b joined)
        return {"activity_label": ex["activity_label"], "ctx": ex["context"], "endings": ex["endings"],
                "label": ex["label"], "source_id": ex.get("source_id", ""), "split_type": ex.get("split_type", "")}
    return ex


def load_tfds_rows(name: str, data_dir: str | None = None) -> dict[str, list[tuple[str, dict]]]:
    """``{"eval": rows, "fewshot": rows}`` as (where, record) pairs; a one-line ValueError when the dataset is
    neither prepared nor downloadable."""
    import tensorflow_datasets as tfds

    builder_name, eval_split = _BUILDERS[name]
    try:
        builder = tfds.builder(builder_name, data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            builder.download_and_prepare()
        source = builder.as_data_source()
    except Exception as e:  # noqa: BLE001 -- any failure here means "not available": say why, in one line
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise ValueError(f"tensorflow-datasets {builder_name} is not prepared and cannot be prepared here "
                         f"({reason}); pass --data-dir with the original files") from None
    out = {}
    for key, split in (("eval", eval_split), ("fewshot", "train")):
        if split in source:
            out[key] = [(f"tfds:{builder_name}/{split}:{i}", _row(name, source[split][i]))
                        for i in range(len(source[split]))]
    return out
