"""The JAX sentence encoder against the PyTorch BertModel reference, on a tiny checkpoint made here."""

import json

import numpy as np
import pytest

from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.env.environment import EnvConfig, InstructionEnv

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ("explain how a refrigerator keeps food cold write haiku about snow describe the water cycle for "
         "children use at least two examples table value , . ! ?").split()
TEXTS = ["Explain how a refrigerator keeps food cold.", "Write a haiku about snow!",
         "Describe the water cycle for children. Use at least two examples, and a table: value value.",
         "zebra"]  # an unknown word


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-minilm")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(WORDS) + 4, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(folder)  # config.json + model.safetensors
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Transformer"},
                                                     {"type": "sentence_transformers.models.Normalize"}]))
    return folder, model, tok


def test_matches_torch_bert_with_mean_pooling(tiny_encoder):
    from teamsrl_jax.env.encoder import SentenceEncoder

    folder, model, tok = tiny_encoder
    ours = SentenceEncoder(folder, batch_size=3)(TEXTS)  # two batches, the second padded
    encodings = tok.encode_batch(TEXTS)
    longest = max(len(e.ids) for e in encodings)
    ids = torch.tensor([e.ids + [0] * (longest - len(e.ids)) for e in encodings])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (longest - len(e.ids)) for e in encodings])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    reference = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert ours.shape == (4, 32) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_embedding_features_in_the_environment(tiny_encoder):
    folder, _, _ = tiny_encoder
    config = EnvConfig.from_preset("default", num_chains=3, features="embedding", encoder_path=str(folder))
    env = InstructionEnv(config, SimulatedBackend())
    assert env.obs_dim == 32 + 6 + 1 + 4
    obs = env.reset()
    assert obs.shape == (3, env.obs_dim)
    assert np.linalg.norm(obs[:, :32], axis=1) == pytest.approx([1.0] * 3, abs=1e-5)
    with pytest.raises(ValueError, match="EnvConfig.encoder_path"):
        EnvConfig.from_preset("default", features="embedding")
