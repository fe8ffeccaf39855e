#!/usr/bin/env python3
"""Writes a random-weight model with Qwen2-0.5B's shapes (24 layers, hidden 896, 14 heads / 2 KV
heads, intermediate 4864, vocab 151936, tied embeddings) as a Hugging Face directory, for speed
measurements only: its outputs are noise. Dev-time only: `python3 scripts/make_bench_model.py DIR`
(needs torch and transformers).

The tokenizer is the qwen2-tied fixture's (512 entries) padded with placeholder tokens up to the
vocabulary size, so any id the random model emits decodes; drive it with `--tokens`.
"""
import argparse, json, os

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
args = ap.parse_args()

torch.manual_seed(0)
cfg = Qwen2Config(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, initializer_range=0.02,
    bos_token_id=None, eos_token_id=151643,
)
with torch.device("cpu"):
    model = Qwen2ForCausalLM(cfg).to(getattr(torch, args.dtype))
os.makedirs(args.out, exist_ok=True)
model.save_pretrained(args.out, safe_serialization=True)
here = os.path.dirname(os.path.abspath(__file__))
tok = os.path.join(here, "..", "tests", "fixtures", "qwen2-tied", "hf-f32", "tokenizer.json")
from tokenizers import Tokenizer, AddedToken
t = Tokenizer.from_file(tok)
t.add_tokens([AddedToken(f"<x{i}>", special=False) for i in range(t.get_vocab_size(), cfg.vocab_size)])
t.save(os.path.join(args.out, "tokenizer.json"))
print(json.dumps({"out": args.out, "params": sum(p.numel() for p in model.parameters())}))
