"""Regenerates tiny_llama_gguf_py.gguf with llama.cpp's own `gguf` Python package (pip install gguf).

The model mirrors `logical_model(Dims{vocab 32, hidden 32, inter 64, layers 1, heads 2, kv_heads 1,
head_dim 16}, Parts{lm_head: true})` in graphs/tests/common/mod.rs: tensor k (seed k, in that
order) holds ((i*37 + k*101) % 1021) / 64 - 8 in Hugging Face order. q/k rows are permuted the way
convert_hf_to_gguf.py does for llama (reshape(n_head, 2, d/2, in).swapaxes(1, 2)). Matrices are
F16 except attn_k (Q8_0) and output (Q4_0); 1-D tensors are F32.

Run from this directory: python3 make_tiny_llama.py
"""
import numpy as np
import gguf

VOCAB, HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM = 32, 32, 64, 2, 1, 16


def values(seed, shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    return (((i * 37 + seed * 101) % 1021) / 64.0 - 8.0).astype(np.float32).reshape(shape)


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


w = gguf.GGUFWriter("tiny_llama_gguf_py.gguf", "llama")
w.add_context_length(128)
w.add_embedding_length(HIDDEN)
w.add_block_count(1)
w.add_feed_forward_length(INTER)
w.add_head_count(HEADS)
w.add_head_count_kv(KV_HEADS)
w.add_rope_dimension_count(HEAD_DIM)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(500000.0)
w.add_tokenizer_model("llama")
w.add_token_list([f"<t{i}>" for i in range(VOCAB)])
w.add_bos_token_id(1)
w.add_eos_token_id(2)

tensors = [
    ("token_embd.weight", (VOCAB, HIDDEN), "f16"),
    ("blk.0.attn_norm.weight", (HIDDEN,), "f32"),
    ("blk.0.attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), "f16"),
    ("blk.0.attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), "q8_0"),
    ("blk.0.attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), "f16"),
    ("blk.0.attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), "f16"),
    ("blk.0.ffn_norm.weight", (HIDDEN,), "f32"),
    ("blk.0.ffn_gate.weight", (INTER, HIDDEN), "f16"),
    ("blk.0.ffn_up.weight", (INTER, HIDDEN), "f16"),
    ("blk.0.ffn_down.weight", (HIDDEN, INTER), "f16"),
    ("output_norm.weight", (HIDDEN,), "f32"),
    ("output.weight", (VOCAB, HIDDEN), "q4_0"),
]
for seed, (name, shape, kind) in enumerate(tensors, start=1):
    data = values(seed, shape)
    if name == "blk.0.attn_q.weight":
        data = permute(data, HEADS)
    elif name == "blk.0.attn_k.weight":
        data = permute(data, KV_HEADS)
    if kind == "f32":
        w.add_tensor(name, data)
    elif kind == "f16":
        w.add_tensor(name, data.astype(np.float16))
    else:
        qt = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[kind]
        w.add_tensor(name, gguf.quants.quantize(data, qt), raw_dtype=qt)
w.add_tensor("rope_freqs.weight", np.arange(1, HEAD_DIM // 2 + 1, dtype=np.float32))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
