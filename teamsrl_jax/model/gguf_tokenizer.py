"""The tokenizer a GGUF file describes, rebuilt from its metadata as a ``transformers.PreTrainedTokenizerFast``.

A GGUF carries no tokenizer.json, only llama.cpp's description: ``tokenizer.ggml.model`` (the kind),
``.tokens``, ``.token_type``, ``.scores``, ``.merges``, ``.pre`` (how byte-level text is split before
merging), the bos/eos/unk/pad ids, ``add_bos_token``/``add_eos_token`` and ``tokenizer.chat_template``.
Two kinds are built with ``tokenizers`` (no torch, no transformers internals):

- ``gpt2``: byte-level BPE from the tokens and merges; the text is split as llama.cpp splits it for
  the file's ``pre`` (GPT-2's regex by default; digits one by one first for SmolLM/StarCoder; the
  Llama-3 and Qwen2 regexes).
- ``llama``: SentencePiece BPE with byte fallback (``<0x0A>`` tokens); merges from the file or, as
  llama.cpp's files usually have none, derived from the token scores (a merge ranks by its result's
  score); spaces become "▁", with a leading "▁" before each run of text when ``add_space_prefix``
  (llama.cpp's rule: at the start and after every special token).

Token types: UNKNOWN (2) and CONTROL (3) become special tokens and USER_DEFINED (4) plain added tokens,
all matched whole in the text.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from teamsrl_jax.model.hf_io import CheckpointError

UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4  # gguf.TokenType
_GPT2_SPLIT = None  # tokenizers' ByteLevel regex is GPT-2's
_DIGITS_THEN_GPT2 = "digits"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> split rule, as in llama.cpp's llama-vocab.cpp; any other value gets GPT-2's.
PRE_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "falcon3", "dbrx", "pixtral"), _LLAMA3_SPLIT),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"), _QWEN2_SPLIT),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"),
                    _DIGITS_THEN_GPT2),
}
KINDS = ("gpt2", "llama")


def tokenizer_from_gguf(meta: dict, file: Path):
    """The tokenizer of a GGUF's metadata (``gguf_io.read_metadata``), or None when it describes none."""
    from transformers import PreTrainedTokenizerFast

    kind = meta.get("tokenizer.ggml.model")
    if "tokenizer.ggml.tokens" not in meta or kind in ("none", "no_vocab"):
        return None
    if kind not in KINDS:
        raise CheckpointError(f"{file}: tokenizer kind {kind!r} is not supported; supported: {', '.join(KINDS)}")
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = {}
    for i, token in enumerate(tokens):
        vocab.setdefault(token, i)  # a repeated token keeps its first id, as in llama.cpp's lookup
    try:
        tokenizer = _byte_level(vocab, meta) if kind == "gpt2" else _sentencepiece(vocab, meta)
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception on inconsistent vocab/merges
        raise CheckpointError(f"{file}: cannot build the {kind} tokenizer: {str(e).splitlines()[0]}") from None
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t, k in zip(tokens, types) if k in (UNKNOWN, CONTROL)])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t, k in zip(tokens, types) if k == USER_DEFINED])

    def token(key):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    special = dict(bos_token=token("bos"), eos_token=token("eos"), unk_token=token("unknown"),
                   pad_token=token("padding"))
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", kind == "llama"))  # llama.cpp's defaults
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    tokenizer.post_processor = _bos_eos(special["bos_token"] if add_bos else None,
                                        special["eos_token"] if add_eos else None, vocab)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **{k: v for k, v in special.items() if v},
                                   add_bos_token=add_bos, add_eos_token=add_eos,
                                   chat_template=meta.get("tokenizer.chat_template"),
                                   clean_up_tokenization_spaces=False)


def _byte_level(vocab: dict[str, int], meta: dict) -> Tokenizer:
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", ())]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    split = PRE_SPLITS.get(meta.get("tokenizer.ggml.pre"), _GPT2_SPLIT)
    if split is _GPT2_SPLIT:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split == _DIGITS_THEN_GPT2:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece(vocab: dict[str, int], meta: dict) -> Tokenizer:
    if "tokenizer.ggml.merges" in meta:
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    else:
        merges = merges_from_scores(vocab, meta.get("tokenizer.ggml.scores") or [0.0] * len(vocab))
    unknown = meta.get("tokenizer.ggml.unknown_token_id")
    unk = meta["tokenizer.ggml.tokens"][unknown] if unknown is not None else None
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    # a normalizer, not Metaspace (which skips the prefix when the text already starts with a space)
    spaces = [normalizers.Replace(" ", "▁")]
    tokenizer.normalizer = normalizers.Sequence(([normalizers.Prepend("▁")] if prefix else []) + spaces)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    return tokenizer


def merges_from_scores(vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    """SentencePiece BPE merges implied by a scored vocabulary: every split of a token into two tokens,
    best result score first (ties: shorter left piece, then lower ids), the order in which SentencePiece
    would apply them."""
    merges = []
    for token, i in vocab.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((-scores[i], len(left), vocab[left], vocab[right], left, right))
    return [(left, right) for *_, left, right in sorted(merges)]


def _bos_eos(bos: str | None, eos: str | None, vocab: dict[str, int]) -> processors.TemplateProcessing:
    single = " ".join(([f"{bos}:0"] if bos else []) + ["$A:0"] + ([f"{eos}:0"] if eos else []))
    pair = single + " " + " ".join(([f"{bos}:1"] if bos else []) + ["$B:1"] + ([f"{eos}:1"] if eos else []))
    return processors.TemplateProcessing(single=single, pair=pair,
                                         special_tokens=[(t, vocab[t]) for t in dict.fromkeys((bos, eos)) if t])
