"""One-step SFT of a Llama-family model on instruction data (the last stage of TeaMs-RL).

Modules: ``records`` (read and validate JSON/JSONL), ``tfds_builder`` (the same through an
array_record TFDS dataset), ``data`` (template, loss mask, packing, batches), ``config``
(``SFTConfig``), ``optim`` (AdamW and schedule), ``step`` (the pure train/eval steps),
``checkpoint`` (orbax), ``metrics`` (MFU, metrics.jsonl), ``trainer`` (the loop) and ``__main__`` (CLI).
"""
