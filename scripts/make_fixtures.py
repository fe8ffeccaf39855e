#!/usr/bin/env python3
"""Generate tandem's reference fixtures (tests/fixtures/) with transformers + torch.

Stages (all by default, or pick with --stage):
  hf    tiny random-weight HF models (f32, f16, one bf16) + reference.json and logits .bin files
  gguf  GGUF files: llama.cpp's converter (f32, f16, q8_0) + a Q4_0 file written with `gguf`

Everything is deterministic: fixed seeds, fixed tokenizer corpus, CPU float32 eager attention.
Run through `cargo xtask fixtures`; see tests/fixtures/README.md for what each file is.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402

VOCAB = 512
N_GREEDY = 24
SEED = 1234

# The tokenizer corpus: plain prose written for this file, so the merges are reproducible
# anywhere and carry no licence questions.
CORPUS = """
The river town woke slowly. Fog lay on the water, and the first boats moved through it like
shadows. A baker opened her shop at five, as she had done for twenty years, and the smell of
bread drifted down to the harbour. The fishermen knew that smell better than any clock.

In the workshop behind the church, an old clockmaker repaired watches for people who still
wanted them. He worked with small tools and a large lamp. Each watch had its own story: a
wedding gift, a prize, a thing found in a drawer after a long life. He wrote the stories in
a notebook, because nobody else would.

Numbers were his other habit. He counted the steps from his door to the bridge (one hundred
and twelve), the windows of the station (forty-four), and the bells of the tower (eight, but
one was cracked). On rainy days he counted the drops on the glass until he lost the thread.

The children of the town thought he was strange. The children were right, and the children
were also wrong. He was strange the way a compass is strange: it points to the same place
whatever you do, and one day you are glad of it.

When the storm came in the winter of that year, the bridge was closed and the power failed.
The town sat in the dark. The clockmaker lit his lamp, opened his notebook, and read the
stories aloud to anyone who came to the workshop. By midnight the room was full. By morning
the storm had passed, and the river was high and brown and fast.

People still talk about that night. They say the stories were better than the radio. They say
the baker brought bread at four in the morning, still warm, and that nobody asked who would pay.
They say the clockmaker counted the people in the room (sixty-one) and wrote the number down.

A computer is a machine that follows instructions. It reads a number, changes it, and writes
it back. It does this billions of times each second. A program is a list of such steps, written
by people who hope they have thought of everything. They have not, and that is why we test.

def add(a, b):
    return a + b

for i in range(10):
    print(i, add(i, i))

Questions and answers: What is the capital of France? Paris. What is two plus two? Four.
How many days are in a week? Seven. Which planet is the largest? Jupiter. Why is the sky
blue? Because air scatters blue light more than red light.

She said: "Let's go to the market tomorrow, if the weather is good." He said: "I'll bring
the basket." They're both early risers; we've seen them on the road at six o'clock.
"""

PROMPTS = [
    "The river town woke",
    "The clockmaker opened his notebook and counted the bells of the tower.",
    "When the storm came, the people of the town sat in the dark and listened to the stories. "
    "The baker brought warm bread at four.",
]

CHAT_EXAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "How many bells are in the tower?"},
]

MODELS = {
    "llama-gqa": {
        "family": "llama3",
        "arch": "LlamaForCausalLM",
        "config": dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        "bf16": True,
    },
    "qwen2-tied": {
        "family": "qwen",
        "arch": "Qwen2ForCausalLM",
        "config": dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            use_sliding_window=False,
        ),
    },
    "qwen3-qknorm": {
        "family": "qwen",
        "arch": "Qwen3ForCausalLM",
        "config": dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            tie_word_embeddings=False,
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            use_sliding_window=False,
        ),
    },
    "llama3-rope": {
        "family": "llama3",
        "arch": "LlamaForCausalLM",
        "config": dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            max_position_embeddings=512,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    },
}


def write_bin(path, array):
    """Little-endian f32, C order."""
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def build_tokenizers(out_root):
    toks = {}
    for family in ("llama3", "qwen"):
        a = bpe.train([CORPUS], VOCAB, family)
        b = bpe.train([CORPUS], VOCAB, family)
        if a.to_str() != b.to_str():
            raise SystemExit(f"tokenizer training for {family} is not deterministic")
        toks[family] = a
    return toks


def make_model(name, spec, tok, out_dir):
    import transformers

    ids = bpe.special_ids(tok, spec["family"])
    cfg_cls = getattr(transformers, spec["arch"].replace("ForCausalLM", "Config"))
    cfg = cfg_cls(
        vocab_size=VOCAB,
        initializer_range=0.2,
        bos_token_id=ids["config_bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        **spec["config"],
    )
    cfg.architectures = [spec["arch"]]
    torch.manual_seed(SEED)
    model = getattr(transformers, spec["arch"])(cfg).to(torch.float32).eval()
    # Default init leaves norms at 1 and biases at 0, which would hide bugs in those paths:
    # perturb them deterministically.
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters()):
            if pname == "model.norm.weight":
                # A large final-norm gain spreads the logits, so greedy top1-top2 margins stay well
                # above f16/quantization noise and greedy comparisons are meaningful.
                p.copy_(4.0 * (1.0 + 0.2 * torch.randn(p.shape, generator=gen)))
            elif pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif pname.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    f32_dir = os.path.join(out_dir, "hf-f32")
    model.save_pretrained(f32_dir, safe_serialization=True)
    bpe.save(tok, spec["family"], f32_dir, cfg.max_position_embeddings)
    variants = [("hf-f16", torch.float16)]
    if spec.get("bf16"):
        variants.append(("hf-bf16", torch.bfloat16))
    for sub, dtype in variants:
        d = os.path.join(out_dir, sub)
        model.to(dtype).save_pretrained(d, safe_serialization=True)
        bpe.save(tok, spec["family"], d, cfg.max_position_embeddings)
        model.to(torch.float32)
    for d in [f32_dir] + [os.path.join(out_dir, s) for s, _ in variants]:
        gc = os.path.join(d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)  # references use a manual greedy loop; nothing reads it
    return f32_dir


def references(name, spec, f32_dir, out_dir):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(f32_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        f32_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    prompts = []
    last = []
    with torch.no_grad():
        for i, text in enumerate(PROMPTS):
            ids = tok(text)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            last.append(logits[-1])
            if i == 1:
                write_bin(os.path.join(out_dir, "logits_prompt1_all.bin"), logits)
                all_shape = list(logits.shape)
            seq = list(ids)
            greedy, margins = [], []
            for _ in range(N_GREEDY):
                step = model(torch.tensor([seq])).logits[0, -1].float()
                top = torch.topk(step, 2)
                nxt = int(top.indices[0])
                greedy.append(nxt)
                margins.append(float(top.values[0] - top.values[1]))
                seq.append(nxt)
            prompts.append(
                {
                    "text": text,
                    "ids": ids,
                    "greedy": greedy,
                    "greedy_text": tok.decode(greedy),
                    "greedy_margins": margins,
                    "min_greedy_margin": min(margins),
                    "last_logits_argmax": int(np.argmax(logits[-1])),
                }
            )
    last = np.stack(last)
    write_bin(os.path.join(out_dir, "logits_last.bin"), last)

    chat_text = tok.apply_chat_template(CHAT_EXAMPLE, tokenize=False, add_generation_prompt=True)
    chat_ids = tok(chat_text, add_special_tokens=False)["input_ids"]
    cfg = model.config
    ref = {
        "model": name,
        "architecture": spec["arch"],
        "family": spec["family"],
        "dtype": "float32",
        "attn_implementation": "eager",
        "vocab_size": cfg.vocab_size,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "add_bos": tok.bos_token is not None,
        "prompts": prompts,
        "arrays": {
            "logits_prompt1_all.bin": {"dtype": "f32le", "shape": all_shape, "prompt": 1},
            "logits_last.bin": {
                "dtype": "f32le",
                "shape": list(last.shape),
                "what": "last-position logits of each prompt, in prompt order",
            },
        },
        "greedy": {
            "n_tokens": N_GREEDY,
            "method": "argmax of a full forward pass over prompt+generated ids at each step (no KV cache, no generate())",
        },
        "chat_example": {"messages": CHAT_EXAMPLE, "add_generation_prompt": True, "text": chat_text, "ids": chat_ids},
        "versions": versions(),
    }
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return ref


def versions():
    import tokenizers
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    try:
        import gguf  # noqa: F401
        from importlib.metadata import version

        out["gguf"] = version("gguf")
    except Exception:
        pass
    return out


def stage_hf(root, names):
    torch.set_num_threads(2)
    toks = build_tokenizers(root)
    summary = {}
    for name in names:
        spec = MODELS[name]
        out_dir = os.path.join(root, name)
        for sub in ("hf-f32", "hf-f16", "hf-bf16"):
            shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
        os.makedirs(out_dir, exist_ok=True)
        f32_dir = make_model(name, spec, toks[spec["family"]], out_dir)
        ref = references(name, spec, f32_dir, out_dir)
        summary[name] = [
            (len(p["ids"]), round(p["min_greedy_margin"], 4), len(set(p["greedy"]))) for p in ref["prompts"]
        ]
        print(f"[hf] {name}: (prompt tokens, min greedy margin, distinct greedy tokens) = {summary[name]}", flush=True)
    return summary


# ---------------------------------------------------------------------------------------------
# GGUF


def stage_gguf(root, names, llama_cpp):
    conv = os.path.join(llama_cpp, "convert_hf_to_gguf.py")
    if not os.path.exists(conv):
        raise SystemExit(f"convert_hf_to_gguf.py not found in {llama_cpp}")
    for name in names:
        spec = MODELS[name]
        hf = os.path.join(root, name, "hf-f32")
        gdir = os.path.join(root, name, "gguf")
        shutil.rmtree(gdir, ignore_errors=True)
        os.makedirs(gdir)
        for outtype in ("f32", "f16", "q8_0"):
            out = os.path.join(gdir, f"{name}-{outtype}.gguf")
            cmd = [
                sys.executable,
                os.path.join(HERE, "convert_gguf.py"),
                "--llama-cpp",
                llama_cpp,
                "--pre",
                bpe.FAMILIES[spec["family"]]["ggml_pre"],
                "--",
                hf,
                "--outtype",
                outtype,
                "--outfile",
                out,
                "--model-name",
                name,
            ]
            print("[gguf] " + " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        q4 = os.path.join(gdir, f"{name}-q4_0.gguf")
        cmd = [
            sys.executable,
            os.path.join(HERE, "quantize_gguf.py"),
            os.path.join(gdir, f"{name}-f32.gguf"),
            q4,
        ]
        print("[gguf] " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        dequantized_references(root, name)


# Map of llama.cpp tensor kinds to HF module names, for loading GGUF weights back into HF models.
GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def unpermute_qk(w, n_head):
    """Undo the converter's llama q/k row interleaving (adjacent pairs back to half-split)."""
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def dequantized_references(root, name):
    """Logits of prompt 1 from the HF model whose matrices are replaced by the dequantized
    matrices of each GGUF file. This isolates a runtime's error from the quantization itself:
    a runtime reading the q8_0/q4_0 file should match these closely, while its distance to the
    f32 reference is dominated by the (large, for random weights) quantization error."""
    import transformers
    from gguf import GGUFReader
    from gguf.quants import dequantize

    d = os.path.join(root, name)
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    ids = ref["prompts"][1]["ids"]
    f32 = np.fromfile(os.path.join(d, "logits_prompt1_all.bin"), dtype="<f4").reshape(len(ids), -1)
    out = {}
    for q in ("f16", "q8_0", "q4_0"):
        model = transformers.AutoModelForCausalLM.from_pretrained(
            os.path.join(d, "hf-f32"), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        cfg = model.config
        sd = model.state_dict()
        for t in GGUFReader(os.path.join(d, "gguf", f"{name}-{q}.gguf")).tensors:
            parts = t.name.split(".")
            if t.name == "token_embd.weight":
                key = "model.embed_tokens.weight"
            elif t.name == "output.weight":
                key = "lm_head.weight"
            elif parts[0] == "blk" and parts[2] in GGUF_TO_HF and parts[3] == "weight":
                key = f"model.layers.{parts[1]}.{GGUF_TO_HF[parts[2]]}.weight"
            else:
                continue  # 1-D tensors are F32 in every file: identical to hf-f32
            w = dequantize(t.data, t.tensor_type).reshape([int(x) for x in reversed(t.shape)])
            if cfg.model_type == "llama" and parts[0] == "blk" and parts[2] in ("attn_q", "attn_k"):
                heads = cfg.num_attention_heads if parts[2] == "attn_q" else cfg.num_key_value_heads
                w = unpermute_qk(w, heads)
            sd[key].copy_(torch.from_numpy(np.ascontiguousarray(w)))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
        fname = f"logits_prompt1_all_{q}.bin"
        write_bin(os.path.join(d, fname), logits)
        rel = float(np.sqrt(((logits - f32) ** 2).mean() / (f32**2).mean()))
        agree = float((logits.argmax(-1) == f32.argmax(-1)).mean())
        out[q] = {
            "file": fname,
            "gguf": f"gguf/{name}-{q}.gguf",
            "shape": list(logits.shape),
            "rel_rmse_vs_f32": round(rel, 5),
            "argmax_agreement_vs_f32": round(agree, 4),
        }
        print(f"[gguf] {name} {q}: dequantized-weight logits rel RMSE vs f32 {rel:.4f}, argmax agreement {agree:.2f}")
    ref["dequantized_references"] = {
        "what": "prompt-1 logits of the HF model (f32 math, eager) with every matrix replaced by the "
        "dequantized matrix of the GGUF file; 1-D tensors are F32 everywhere",
        **out,
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures"))
    ap.add_argument("--stage", choices=["hf", "gguf", "all"], default="all")
    ap.add_argument("--llama-cpp", help="llama.cpp source tree (holds convert_hf_to_gguf.py and gguf-py)")
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="only these models")
    args = ap.parse_args()
    root = os.path.abspath(args.out)
    names = args.model or list(MODELS)
    if args.stage in ("hf", "all"):
        stage_hf(root, names)
    if args.stage in ("gguf", "all"):
        if not args.llama_cpp:
            raise SystemExit("--llama-cpp is required for the gguf stage")
        stage_gguf(root, names, args.llama_cpp)


if __name__ == "__main__":
    main()
