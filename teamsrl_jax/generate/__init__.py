"""The dataset stage: ``python -m teamsrl_jax.generate`` turns a trained policy into SFT data.

``policy`` (the trained policy of a ``train_policy`` run over batches of chains, with the ``policy`` or ``paper``
schedule), ``dedup`` (the exact ROUGE-L near-duplicate filter), ``run`` (the batched loop: instructor, filters,
responder, ``data.jsonl``, resume by replay), ``report`` (``report.json``, the table, the plots), ``config``.
"""
