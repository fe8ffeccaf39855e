#!/usr/bin/env python3
"""Train tandem's embedded default model and write it as a GGUF file (llama.cpp layout).

What: a tiny Llama-architecture model with a 2048-token byte-level BPE (Llama-3 pre-tokenizer),
trained from scratch, on 2 CPU cores, with a fixed seed and a fixed number of steps, on the licence
texts Debian ships in every installation (/usr/share/common-licenses, package base-files). It
writes English legalese — not a useful assistant, but real text instead of noise, so
`tandem run` with no `-m` shows the whole pipeline (tokenizer, prefill, decode) working.

Export: written with the `gguf` package using the tensor names, metadata keys and llama's q/k row
permutation that llama.cpp's convert_hf_to_gguf.py uses for arch `llama` (2-D tensors F16, 1-D F32).

Run through `cargo xtask default-model`; see assets/README.md for the numbers of the committed file.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402

CORPUS_DIR = "/usr/share/common-licenses"
# Regular files only (the folder also has symlinks such as GPL -> GPL-3), in this order.
CORPUS_FILES = [
    "Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.2", "GFDL-1.3", "GPL-1", "GPL-2", "GPL-3",
    "LGPL-2", "LGPL-2.1", "LGPL-3", "MPL-1.1", "MPL-2.0",
]
# The corpus digest is printed and recorded in assets/default-model.train.json: another Debian
# release may ship slightly different files, and then the trained model differs from assets/.

VOCAB = 2048
SEED = 20240601
CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)
SEQ = 64
BATCH = 16
LR = 3e-3
WARMUP = 40
VALID_FRACTION = 0.05


def load_corpus():
    texts = []
    for name in CORPUS_FILES:
        with open(os.path.join(CORPUS_DIR, name), encoding="utf-8") as f:
            texts.append(f.read())
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    return texts, digest


def permute_qk(w, n_head):
    """HF stores q/k rows as [first halves | second halves] per head (rotate_half pairing);
    llama.cpp's `llama` arch rotates adjacent pairs, so interleave the two halves of each head."""
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, 2, hd // 2, inp).swapaxes(1, 2).reshape(out, inp)


def export_gguf(path, model, tok, cfg, name):
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_type("model")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(CONFIG["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # Tokenizer, as llama.cpp's converter writes a byte-level BPE ("gpt2" model).
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    tokens = [None] * VOCAB
    types = [gguf.TokenType.NORMAL] * VOCAB
    for text, i in vocab.items():
        tokens[i] = text
    for added in data["added_tokens"]:
        tokens[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
    if any(t is None for t in tokens):
        raise SystemExit("tokenizer ids are not dense")
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    ids = bpe.special_ids(tok, "llama3")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(bpe.FAMILIES["llama3"]["ggml_pre"])
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["bos"])
    w.add_eos_token_id(ids["eos"])
    w.add_pad_token_id(ids["pad"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(bpe.LLAMA3_TEMPLATE)

    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}

    def put(gname, arr):
        arr = np.ascontiguousarray(arr)
        w.add_tensor(gname, arr.astype(np.float16) if arr.ndim == 2 else arr.astype(np.float32))

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        put(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        put(b + "attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        put(b + "attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        put(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        put(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        put(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        put(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        put(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        put(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "assets", "default-model.gguf"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--hf-out", help="also save the trained model in HF format here (for checks)")
    ap.add_argument("--export-only", metavar="HF_DIR", help="skip training: export a model saved with --hf-out")
    args = ap.parse_args()

    import transformers

    if args.export_only:
        from tokenizers import Tokenizer

        model = transformers.LlamaForCausalLM.from_pretrained(args.export_only, dtype=torch.float32)
        tok = Tokenizer.from_file(os.path.join(args.export_only, "tokenizer.json"))
        export_gguf(args.out, model, tok, model.config, "tandem-default-licenses")
        print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
        return

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    texts, digest = load_corpus()
    print(f"corpus: {len(CORPUS_FILES)} files, {sum(map(len, texts))} chars, sha256 {digest}", flush=True)
    tok = bpe.train(texts, VOCAB, "llama3")
    ids = bpe.special_ids(tok, "llama3")

    # Each file is one document: <|begin_of_text|> text <|end_of_text|>. The last 5% of every
    # document is held out for validation.
    train_ids, valid_ids = [], []
    for text in texts:
        enc = tok.encode(text).ids + [ids["pad"]]  # encode adds BOS; pad is <|end_of_text|>
        cut = int(len(enc) * (1 - VALID_FRACTION))
        train_ids += enc[:cut]
        valid_ids += enc[cut:]
    train = torch.tensor(train_ids, dtype=torch.long)
    valid = torch.tensor(valid_ids, dtype=torch.long)
    print(f"tokens: train {len(train)}, valid {len(valid)}", flush=True)

    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        initializer_range=0.02,
        **CONFIG,
    )
    model = transformers.LlamaForCausalLM(cfg).to(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LR,
        betas=(0.9, 0.95),
    )

    def lr_at(step):
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        t = (step - WARMUP) / max(1, args.steps - WARMUP)
        return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    gen = torch.Generator().manual_seed(SEED)

    def evaluate():
        model.eval()
        with torch.no_grad():
            n = (len(valid) - 1) // SEQ
            x = valid[: n * SEQ].view(n, SEQ)
            y = valid[1 : n * SEQ + 1].view(n, SEQ)
            loss = model(input_ids=x).logits.flatten(0, 1)
            loss = torch.nn.functional.cross_entropy(loss, y.flatten()).item()
        model.train()
        return loss

    model.train()
    t0 = time.time()
    log = []
    smooth = None
    for step in range(args.steps):
        starts = torch.randint(0, len(train) - SEQ - 1, (BATCH,), generator=gen)
        x = torch.stack([train[s : s + SEQ] for s in starts])
        y = torch.stack([train[s + 1 : s + SEQ + 1] for s in starts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            entry = {"step": step, "train_loss": round(smooth, 4), "seconds": round(time.time() - t0, 1)}
            if step % 200 == 0 or step == args.steps - 1:
                entry["valid_loss"] = round(evaluate(), 4)
            log.append(entry)
            print(json.dumps(entry), flush=True)

    model.eval()
    final = {"train_loss_smoothed": round(smooth, 4), "valid_loss": round(evaluate(), 4)}
    print(f"final: {final}, {time.time() - t0:.0f} s", flush=True)

    if args.hf_out:
        model.save_pretrained(args.hf_out, safe_serialization=True)
        bpe.save(tok, "llama3", args.hf_out, cfg.max_position_embeddings)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export_gguf(args.out, model, tok, cfg, "tandem-default-licenses")

    # A sample, greedy, from the trained float32 model.
    samples = {}
    with torch.no_grad():
        for prompt in ["This License", "You may", "The software is provided"]:
            seq = tok.encode(prompt).ids
            for _ in range(40):
                nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(nxt)
                if nxt in (ids["eos"], ids["pad"]):
                    break
            samples[prompt] = tok.decode(seq, skip_special_tokens=True)
            print(f"sample: {samples[prompt]!r}", flush=True)

    summary = {
        "corpus_sha256": digest,
        "corpus_files": CORPUS_FILES,
        "tokens": {"train": len(train), "valid": len(valid)},
        "parameters": n_params,
        "config": CONFIG,
        "vocab": VOCAB,
        "seed": SEED,
        "steps": args.steps,
        "batch": BATCH,
        "seq": SEQ,
        "lr": LR,
        "log": log,
        "final": final,
        "seconds": round(time.time() - t0),
        "samples_greedy": samples,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "gguf_bytes": os.path.getsize(args.out),
    }
    with open(os.path.splitext(args.out)[0] + ".train.json", "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
