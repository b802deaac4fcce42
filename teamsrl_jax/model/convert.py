"""``python -m teamsrl_jax.model.convert IN.gguf OUT_DIR``: a GGUF checkpoint -> a Hugging Face folder.

    python -m teamsrl_jax.model.convert SmolLM2-135M-Instruct.Q4_1.gguf smollm2-hf [--dtype bfloat16]

The GGUF is dequantised (``gguf_io.load_gguf``) and written with ``hf_io.save_pretrained``: safetensors,
config.json with ``architectures``, generation_config.json and the tokenizer files with the chat
template, a folder that loads unchanged in transformers (``AutoModelForCausalLM``, ``AutoTokenizer``),
vLLM and ``load_pretrained``. Quantisation is not undone: the weights are the dequantised values.
Bad input fails with one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from teamsrl_jax.cli import main_guard

DTYPES = ("float32", "bfloat16", "float16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m teamsrl_jax.model.convert",
                                     description="Dequantise a GGUF checkpoint into a Hugging Face folder.")
    parser.add_argument("gguf", help="the .gguf file (or a folder holding exactly one)")
    parser.add_argument("out", help="the Hugging Face folder to write (replaced atomically if it exists)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved tensors")
    return parser


def convert(gguf_path, out, dtype: str = "float32", progress: bool = True) -> None:
    """Writes the HF folder ``out`` from the GGUF at ``gguf_path``, tensors stored in ``dtype``."""
    from teamsrl_jax.model.gguf_io import load_gguf
    from teamsrl_jax.model.hf_io import save_pretrained

    # param_dtype: a bfloat16 conversion never holds the float32 model
    model, config, tokenizer = load_gguf(gguf_path, param_dtype=dtype, progress=progress)
    save_pretrained(model, out, config=config, tokenizer=tokenizer, dtype=dtype)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> None:
        convert(args.gguf, args.out, args.dtype)
        print(f"wrote {args.out}", file=sys.stderr)

    return main_guard(run)


if __name__ == "__main__":
    sys.exit(main())
