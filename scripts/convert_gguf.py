#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py on a fixture whose tokenizer llama.cpp has never seen.

The converter names the BPE pre-tokenizer (`tokenizer.ggml.pre`) by hashing how the tokenizer
encodes a probe string and looking the hash up in a table of known models. Our tokenizers are
trained here, so their hash is in no table, although their pre-tokenizer (split regex +
byte-level) is exactly Qwen2's or Llama-3's. This wrapper tells the converter which family it is
(`--pre qwen2` / `--pre llama-bpe`) by replacing that one lookup; everything else — tensor names,
llama's q/k row permutation, dtype choices, metadata — is the unmodified converter.

usage: convert_gguf.py --llama-cpp DIR --pre NAME -- <convert_hf_to_gguf.py arguments>
"""

import argparse
import os
import runpy
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--pre", required=True, help="llama.cpp pre-tokenizer name, e.g. qwen2 or llama-bpe")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    root = os.path.abspath(args.llama_cpp)
    sys.path.insert(0, root)
    sys.path.insert(1, os.path.join(root, "gguf-py"))

    import conversion.base as base  # the converter's own package

    patched = 0
    for cls in vars(base).values():
        if isinstance(cls, type) and "get_vocab_base_pre" in vars(cls):
            setattr(cls, "get_vocab_base_pre", lambda self, tokenizer, _pre=args.pre: _pre)
            patched += 1
    if patched == 0:
        raise SystemExit("convert_gguf.py: get_vocab_base_pre not found; the converter layout changed")

    sys.argv = [os.path.join(root, "convert_hf_to_gguf.py")] + rest
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
