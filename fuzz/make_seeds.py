"""Writes the seed inputs of every fuzz target, from the repository's real test files.

The committed corpus (fuzz/corpus/<target>/) is these seeds after fuzzing and `cargo fuzz cmin`;
this script is how to start over. Seeds are kept small so the fuzzer stays fast: real files where
they are small (tokenizer GGUFs, tokenizer.json, chat templates, config.json), header slices of the
large ones, and tiny models rebuilt from the fixtures' metadata (same keys, 32-wide tensors).

    python3 fuzz/make_seeds.py OUT_DIR      # writes OUT_DIR/<target>/*

Only the standard library is used.
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TOKDATA = os.path.join(ROOT, "graphs", "tests", "data", "tokenizer")
GGUFDATA = os.path.join(ROOT, "graphs", "tests", "data", "gguf")

TEXT = "Hello world, it's 2024! <|im_start|>user\n  naïve café 🙂 1234567\t<s></s>".encode()

# --------------------------------------------------------------------------------------------
# GGUF reading and writing (metadata and tensor directory; tensor data as opaque bytes).

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "B", T_I8: "b", T_U16: "H", T_I16: "h", T_U32: "I", T_I32: "i", T_F32: "f",
          T_BOOL: "?", T_U64: "Q", T_I64: "q", T_F64: "d"}


def read_gguf(path):
    b = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = b[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    def value(t):
        if t == T_STR:
            return string()
        if t == T_ARR:
            it, n = take("I"), take("Q")
            return (it, [value(it) for _ in range(n)])
        return take(SCALAR[t])

    assert b[:4] == b"GGUF"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    meta = []
    for _ in range(n_kv):
        k = string()
        t = take("I")
        meta.append((k, t, value(t)))
    for _ in range(n_tensors):
        string()
        n_dims = take("I")
        for _ in range(n_dims):
            take("Q")
        take("I")
        take("Q")
    return meta, pos


def gguf_bytes(meta, tensors, alignment=32, tail=b""):
    """meta: [(key, type, value)], arrays as (item_type, [values]); tensors: [(name, dims
    innermost first, ggml type, data bytes)]."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(meta))

    def string(s):
        e = s.encode()
        return struct.pack("<Q", len(e)) + e

    def value(t, v):
        if t == T_STR:
            return string(v)
        if t == T_ARR:
            it, items = v
            return struct.pack("<IQ", it, len(items)) + b"".join(value(it, x) for x in items)
        return struct.pack("<" + SCALAR[t], v)

    for k, t, v in meta:
        out += string(k) + struct.pack("<I", t) + value(t, v)
    offset = 0
    layout = []
    for name, dims, ty, data in tensors:
        out += string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        layout.append((offset, data))
        offset += len(data)
        offset = (offset + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    base = len(out)
    for off, data in layout:
        out += b"\0" * (base + off - len(out)) + data
    out += b"\0" * (-len(out) % alignment)
    return bytes(out) + tail


F32, F16, Q4_0, Q8_0, BF16 = 0, 1, 2, 8, 30


def tensor_bytes(ty, rows, cols):
    per_row = {F32: cols * 4, F16: cols * 2, BF16: cols * 2, Q8_0: cols // 32 * 34,
               Q4_0: cols // 32 * 18}[ty]
    if ty == F32:
        return struct.pack("<%df" % (rows * cols), *([0.5] * (rows * cols)))
    if ty in (Q8_0, Q4_0):
        block = struct.pack("<e", 0.25) + b"\x11" * (32 if ty == Q8_0 else 16)
        return block * (rows * cols // 32)
    return b"\x00\x3c" * (rows * cols) if ty == F16 else b"\x80\x3f" * (rows * cols)


def tiny_gguf(arch, wtype, tied=False, rope_freqs=False, tokenizer_meta=()):
    """A complete 1-layer model, hidden 32, 2 heads of 16, 1 KV head, vocab 8."""
    h, ff, v, heads, kv, hd = 32, 32, 8, 2, 1, 16
    meta = [("general.architecture", T_STR, arch), ("general.alignment", T_U32, 32)]
    meta += [(f"{arch}.{k}", t, x) for k, t, x in [
        ("context_length", T_U32, 64), ("embedding_length", T_U32, h),
        ("feed_forward_length", T_U32, ff), ("block_count", T_U32, 1),
        ("attention.head_count", T_U32, heads), ("attention.head_count_kv", T_U32, kv),
        ("attention.key_length", T_U32, hd), ("attention.value_length", T_U32, hd),
        ("rope.dimension_count", T_U32, hd), ("rope.freq_base", T_F32, 10000.0),
        ("attention.layer_norm_rms_epsilon", T_F32, 1e-5), ("vocab_size", T_U32, v)]]
    meta += [("tokenizer.ggml.bos_token_id", T_U32, 1), ("tokenizer.ggml.eos_token_id", T_U32, 2)]
    meta += [m for m in tokenizer_meta if m[0] not in {k for k, _, _ in meta}]
    t = []

    def mat(name, rows, cols, ty=wtype):
        t.append((name, [cols, rows], ty, tensor_bytes(ty, rows, cols)))

    def vec(name, n):
        t.append((name, [n], F32, tensor_bytes(F32, 1, n)))

    mat("token_embd.weight", v, h)
    vec("output_norm.weight", h)
    if not tied:
        mat("output.weight", v, h)
    if rope_freqs:
        vec("rope_freqs.weight", hd // 2)
    vec("blk.0.attn_norm.weight", h)
    mat("blk.0.attn_q.weight", heads * hd, h)
    mat("blk.0.attn_k.weight", kv * hd, h)
    mat("blk.0.attn_v.weight", kv * hd, h)
    if arch == "qwen2":
        vec("blk.0.attn_q.bias", heads * hd)
        vec("blk.0.attn_k.bias", kv * hd)
        vec("blk.0.attn_v.bias", kv * hd)
    if arch == "qwen3":
        vec("blk.0.attn_q_norm.weight", hd)
        vec("blk.0.attn_k_norm.weight", hd)
    mat("blk.0.attn_output.weight", h, heads * hd)
    vec("blk.0.ffn_norm.weight", h)
    mat("blk.0.ffn_gate.weight", ff, h)
    mat("blk.0.ffn_up.weight", ff, h)
    mat("blk.0.ffn_down.weight", h, ff)
    return gguf_bytes(meta, t)


def shrink_tokenizer_meta(meta, keep):
    """The fixture's tokenizer keys with the vocabulary cut to its first `keep` entries (merges
    whose pieces survive are kept)."""
    out = []
    tokens = None
    for k, t, v in meta:
        if not k.startswith("tokenizer."):
            continue
        if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            v = (v[0], v[1][:keep])
            if k == "tokenizer.ggml.tokens":
                tokens = set(v[1])
        out.append((k, t, v))
    fixed = []
    for k, t, v in out:
        if k == "tokenizer.ggml.merges":
            v = (v[0], [m for m in v[1] if all(p in tokens for p in m.split(" ", 1))
                        and m.replace(" ", "") in tokens])
        if k.endswith("_token_id") and v >= keep:
            v = keep - 1
        fixed.append((k, t, v))
    return fixed


# --------------------------------------------------------------------------------------------
# safetensors.

def safetensors_bytes(tensors, dtype="F32"):
    """tensors: [(name, shape)]; every element 0.5 (F32) or 1.0 (F16/BF16)."""
    size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    header, data, off = {}, bytearray(), 0
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n * size]}
        data += {"F32": struct.pack("<f", 0.5), "F16": b"\x00\x3c", "BF16": b"\x80\x3f"}[dtype] * n
        off += n * size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(data)


def tiny_hf(config, dtype="F32"):
    """config.json with small sizes, and the safetensors tensors it calls for."""
    c = dict(config)
    c.update(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, head_dim=4, vocab_size=4, max_position_embeddings=32)
    h, ff, v, q, kv, hd = 8, 8, 4, 8, 4, 4
    arch = c.get("model_type", "llama")
    t = [("model.embed_tokens.weight", [v, h]), ("model.norm.weight", [h])]
    if not c.get("tie_word_embeddings"):
        t.append(("lm_head.weight", [v, h]))
    p = "model.layers.0."
    t += [(p + "input_layernorm.weight", [h]), (p + "self_attn.q_proj.weight", [q, h]),
          (p + "self_attn.k_proj.weight", [kv, h]), (p + "self_attn.v_proj.weight", [kv, h]),
          (p + "self_attn.o_proj.weight", [h, q]), (p + "post_attention_layernorm.weight", [h]),
          (p + "mlp.gate_proj.weight", [ff, h]), (p + "mlp.up_proj.weight", [ff, h]),
          (p + "mlp.down_proj.weight", [h, ff])]
    if arch == "qwen2":
        t += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]),
              (p + "self_attn.v_proj.bias", [kv])]
    if arch == "qwen3":
        t += [(p + "self_attn.q_norm.weight", [hd]), (p + "self_attn.k_norm.weight", [hd])]
    return json.dumps(c, indent=1).encode(), t


def record(kind, data):
    return bytes([kind]) + struct.pack("<I", len(data)) + data


# --------------------------------------------------------------------------------------------

def main(out):
    def write(target, name, data):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    models = sorted(os.listdir(FIXTURES))
    models = [m for m in models if os.path.isdir(os.path.join(FIXTURES, m))]
    tok_ggufs = sorted(f for f in os.listdir(TOKDATA) if f.endswith(".gguf"))

    # gguf: tiny models of every architecture and weight type, the real tiny llama, and the
    # header (metadata and tensor directory, no data) of every fixture file.
    tok_meta = shrink_tokenizer_meta(read_gguf(os.path.join(TOKDATA, "llama3.gguf"))[0], 8)
    for arch in ["llama", "qwen2", "qwen3"]:
        for name, ty in [("f32", F32), ("f16", F16), ("bf16", BF16), ("q8_0", Q8_0),
                         ("q4_0", Q4_0)]:
            write("gguf", f"tiny-{arch}-{name}.gguf",
                  tiny_gguf(arch, ty, tied=arch == "qwen2", rope_freqs=arch == "llama",
                            tokenizer_meta=tok_meta if ty == F16 else ()))
    write("gguf", "tiny_llama_gguf_py.gguf",
          open(os.path.join(GGUFDATA, "tiny_llama_gguf_py.gguf"), "rb").read())
    for m in models:
        gdir = os.path.join(FIXTURES, m, "gguf")
        for f in sorted(os.listdir(gdir)):
            path = os.path.join(gdir, f)
            write("gguf", f"head-{f}", open(path, "rb").read()[:read_gguf(path)[1]])

    # gguf_tokenizer: the four tokenizer GGUFs whole and cut to 16 tokens, each with text in the
    # data section.
    for f in tok_ggufs:
        meta, _ = read_gguf(os.path.join(TOKDATA, f))
        base = f[:-len(".gguf")]
        write("gguf_tokenizer", f"{base}.gguf", gguf_bytes(meta, [], tail=TEXT))
        write("gguf_tokenizer", f"{base}-16.gguf",
              gguf_bytes(shrink_tokenizer_meta(meta, 16), [], tail=TEXT))

    # tokenizer_json: every tokenizer.json of the tests, followed by text.
    seen = set()
    paths = [os.path.join(TOKDATA, d, "tokenizer.json") for d in sorted(os.listdir(TOKDATA))]
    paths += [os.path.join(FIXTURES, m, "hf-f16", "tokenizer.json") for m in models]
    for p in paths:
        if not os.path.isfile(p):
            continue
        data = open(p, "rb").read()
        if data in seen:
            continue
        seen.add(data)
        name = p.split(os.sep)[-2] if "fixtures" not in p else p.split(os.sep)[-3]
        write("tokenizer_json", f"{name}.json", data + b"\0" + TEXT)
        # The same pipeline with a vocabulary of 16 pieces.
        j = json.loads(data)
        model = j["model"]
        if model.get("type") == "BPE" and isinstance(model.get("vocab"), dict):
            vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1])[:16])
            model["vocab"] = vocab
            model["merges"] = []
            j["added_tokens"] = [t for t in j.get("added_tokens", []) if t["id"] < 16]
            write("tokenizer_json", f"{name}-16.json",
                  json.dumps(j, ensure_ascii=False).encode() + b"\0" + TEXT)
    small_models = {
        "wordlevel": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2},
                      "unk_token": "[UNK]"},
        "wordpiece": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}},
        "unigram": {"type": "Unigram", "unk_id": 0, "byte_fallback": False,
                    "vocab": [["<unk>", 0.0], ["a", -1.0], ["b", -2.0], ["ab", -1.5]]},
    }
    for name, model in small_models.items():
        j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
             "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
             "post_processor": None, "decoder": {"type": "WordPiece", "prefix": "##",
                                                 "cleanup": True}, "model": model}
        write("tokenizer_json", f"{name}.json", json.dumps(j).encode() + b"\0ab ba a b")

    # chat_template: the test templates and every template a fixture ships, with a conversation.
    convo = b"\0<s>\0</s>\0system\0You are terse.\0user\0Hi there\0assistant\0Hello.\0user\0Bye"
    chat = os.path.join(TOKDATA, "chat")
    for f in sorted(os.listdir(chat)):
        write("chat_template", f, open(os.path.join(chat, f), "rb").read() + convo)
    for m in models:
        cfg = json.load(open(os.path.join(FIXTURES, m, "hf-f16", "tokenizer_config.json")))
        write("chat_template", f"{m}.jinja", cfg["chat_template"].encode() + convo)

    # safetensors_config: each fixture's config.json with its real safetensors header (a slice:
    # no data), and as a tiny complete model, single-file and sharded.
    for m in models:
        for d in sorted(os.listdir(os.path.join(FIXTURES, m))):
            hf = os.path.join(FIXTURES, m, d)
            if not d.startswith("hf-"):
                continue
            config = open(os.path.join(hf, "config.json"), "rb").read()
            st = open(os.path.join(hf, "model.safetensors"), "rb").read()
            header_end = 8 + struct.unpack("<Q", st[:8])[0]
            write("safetensors_config", f"{m}-{d}-header",
                  record(0, config) + record(1, st[:header_end]))
        config, tensors = tiny_hf(json.load(open(os.path.join(FIXTURES, m, "hf-f16",
                                                              "config.json"))))
        for dtype in ["F32", "F16", "BF16"]:
            write("safetensors_config", f"{m}-tiny-{dtype.lower()}",
                  record(0, config) + record(1, safetensors_bytes(tensors, dtype)))
        half = len(tensors) // 2
        a, b = tensors[:half], tensors[half:]
        index = {"metadata": {}, "weight_map": {n: "model-00001-of-00002.safetensors" for n, _ in a}}
        index["weight_map"].update({n: "model-00002-of-00002.safetensors" for n, _ in b})
        write("safetensors_config", f"{m}-tiny-sharded",
              record(0, config) + record(2, json.dumps(index).encode())
              + record(3, safetensors_bytes(a)) + record(4, safetensors_bytes(b)))

    # token_list: what people type after --tokens.
    for i, s in enumerate(["1,2,3", "0", "4294967295", "4294967296", " 1, 2 ,3 ", "1,,2", "",
                           "+1", "-1", "1 2", "00012", "1,2,", ",", "\u0661", "151643,151645"]):
        write("token_list", f"seed-{i:02}", s.encode())


if __name__ == "__main__":
    main(sys.argv[1])
