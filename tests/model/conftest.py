"""Fixtures for the model tests: tiny random Hugging Face checkpoints written by PyTorch transformers."""

import numpy as np
import pytest

TINY_HF = dict(vocab_size=300, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5,
               # larger than HF's 0.02 so attention is far from uniform and rope/mask errors show in logits
               initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=3)


def _make_hf_model(arch: str, **overrides):
    import torch
    import transformers

    config_cls = {"llama": transformers.LlamaConfig, "mistral": transformers.MistralConfig,
                  "qwen2": transformers.Qwen2Config}[arch]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config_cls(**{**TINY_HF, **overrides}))
    with torch.no_grad():  # HF initialises norms to 1 and biases to 0: randomise so their layout is tested
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _hf_logits(model, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


@pytest.fixture
def hf_logits():
    """(torch model, token ids) -> float32 numpy logits."""
    return _hf_logits


@pytest.fixture
def hf_checkpoint(tmp_path):
    """Factory: (torch model, checkpoint dir) for an architecture and HF config overrides."""
    counter = iter(range(100))

    def make(arch: str = "llama", **overrides):
        model = _make_hf_model(arch, **overrides)
        path = tmp_path / f"{arch}-{next(counter)}"
        model.save_pretrained(path)
        return model, path

    return make


@pytest.fixture
def token_ids():
    return np.random.default_rng(0).integers(4, TINY_HF["vocab_size"], size=(2, 20))
