"""A tiny byte-level BPE tokenizer trained locally, so tests and the ``tiny`` preset run offline."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0..3
# One turn per message, "<|role|>" header, content, eos; a trailing assistant header to generate.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512, out_dir=None):
    """Trains a byte-level BPE (every string encodes; no unknowns) on ``texts`` and wraps it as a
    ``transformers.PreTrainedTokenizerFast`` with <unk>/<s>/</s>/<pad>, BOS prepended on encode, and a
    simple chat template. Saves it into ``out_dir`` when given. ``vocab_size`` must leave room for the
    256 byte symbols and the 4 special tokens; the result may be smaller if the texts are few."""
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size}: a byte-level BPE needs at least {256 + len(SPECIAL_TOKENS)}")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]),
    ])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                      eos_token="</s>", pad_token="<pad>", chat_template=CHAT_TEMPLATE)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        wrapped.save_pretrained(str(out_dir))
    return wrapped
