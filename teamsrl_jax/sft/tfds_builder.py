"""A tensorflow-datasets builder for local instruction files, stored as ``array_record``.

No TensorFlow is needed: the builder writes ``array_record`` shards and they are read back through
``builder.as_data_source()`` (random access, no ``tf.data``). The source file is validated with the
same ``records.read_records`` as the JSONL path, so both paths give the same ``Record``s in the same
order (``disable_shuffling``). The config name carries a hash of the file, so an edited file is
built again under a new name instead of silently reusing a stale dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from teamsrl_jax.sft.records import Record, read_records


@dataclasses.dataclass
class InstructionFileConfig(tfds.core.BuilderConfig):
    """Which file to build from (``name`` is ``<stem>-<sha256 prefix>``)."""

    path: str = ""


class InstructionFile(tfds.core.GeneratorBasedBuilder):
    """Alpaca and chat records of one local JSON/JSONL file, one ``train`` split."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: list = []
    # Set explicitly: tfds would infer them through `importlib_resources`, a package it does not install.
    code_path = epath.Path(__file__)
    pkg_dir_path = epath.Path(__file__).parent

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description="Instruction records (Alpaca fields or chat messages) from a local file.",
            disable_shuffling=True,  # keep the file's order: same examples as the JSONL path
            features=tfds.features.FeaturesDict({
                "instruction": text, "input": text, "output": text,
                "messages": tfds.features.Sequence({"role": text, "content": text}),
                "line": tfds.features.Scalar(np.int64),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(self.builder_config.path)}

    def _generate_examples(self, path):
        for i, r in enumerate(read_records(path)):
            yield i, {"instruction": r.instruction, "input": r.input, "output": r.output, "line": r.line,
                      "messages": [{"role": role, "content": c} for role, c in r.messages]}


def _decode(ex: dict) -> Record:
    s = lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b)  # noqa: E731
    msgs = ex["messages"]
    return Record(instruction=s(ex["instruction"]), input=s(ex["input"]), output=s(ex["output"]),
                  messages=tuple((s(r), s(c)) for r, c in zip(msgs["role"], msgs["content"])),
                  line=int(ex["line"]))


def builder_for(path: str | pathlib.Path, data_dir: str | pathlib.Path) -> InstructionFile:
    """The builder of ``path`` (one config per file content) under ``data_dir``."""
    path = pathlib.Path(path).resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    name = f"{''.join(c if c.isalnum() else '_' for c in path.stem)}-{digest}"
    config = InstructionFileConfig(name=name, path=str(path))
    return InstructionFile(data_dir=str(data_dir), config=config, file_format="array_record")


def load_tfds_records(path: str | pathlib.Path, data_dir: str | pathlib.Path) -> list[Record]:
    """Build (once per file content) and read back all records of ``path`` through ``as_data_source``."""
    read_records(path)  # fail with file:line before tfds starts writing anything
    logging.getLogger("absl").setLevel(logging.ERROR)  # tfds warns about custom configs by default
    tfds.disable_progress_bar()
    builder = builder_for(path, data_dir)
    builder.download_and_prepare()
    source = builder.as_data_source()["train"]
    return [_decode(source[i]) for i in range(len(source))]
