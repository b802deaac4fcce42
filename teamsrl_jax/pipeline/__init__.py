"""The whole method in one command: ``python -m teamsrl_jax.pipeline`` (``config``: the YAML and its defaults;
``stages``: the stages and their resume; ``report``: ``report.md``)."""
