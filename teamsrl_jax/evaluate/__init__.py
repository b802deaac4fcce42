"""Evaluation with lm-evaluation-harness's definitions: ``python -m teamsrl_jax.evaluate``.

``tasks`` (ARC and HellaSwag documents, prompts, few-shot contexts drawn as lm-eval draws them), ``scorer``
(continuation log-likelihoods on the JAX model, shared contexts computed once), ``harness`` (acc, acc_norm,
standard errors, lm-eval's results and samples layout, the paired change between two runs on the same items),
``tfds_source`` (the TensorFlow Datasets path),
``lmeval_tasks`` (lm-eval task configs of the same items, for a cross-check with lm-eval itself)."""
