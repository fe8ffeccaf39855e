#!/usr/bin/env python3
"""Side-by-side CPU prefill/decode speed: tandem vs llama.cpp (llama-cpp-python) on the same GGUF.

Runs alternate (tandem, llama.cpp, tandem, …) so machine noise hits both; reports medians and
the ratio tandem/llama.cpp. Dev-time only: `pip install llama-cpp-python` builds llama.cpp.

usage: bench_vs_llamacpp.py --tandem target/release/tandem --gguf M.gguf [--threads 1,2] [--prompt 64] [--gen 32] [--repeat 3]
"""
import argparse, json, statistics, subprocess, time

import llama_cpp


def run_tandem(binary, gguf, threads, prompt, gen):
    toks = ",".join(str(3 + i % 500) for i in range(prompt))
    out = subprocess.run(
        [binary, "run", "-m", gguf, "--tokens", toks, "-n", str(gen), "--temperature", "0",
         "--threads", str(threads), "--json", "--ctx", str(prompt + gen + 8)],
        check=True, capture_output=True, text=True)
    s = json.loads(out.stdout)["stats"]
    return s["prefill_tok_s"], s["decode_tok_s"]


def run_llamacpp(llm, prompt, gen):
    toks = [3 + i % 500 for i in range(prompt)]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    t1 = time.perf_counter()
    tok = toks[-1]
    llm.eval([tok])  # first generated token belongs to TTFT, as in tandem's stats
    t2 = time.perf_counter()
    for _ in range(gen - 2):
        llm.eval([tok])
    t3 = time.perf_counter()
    return prompt / (t1 - t0), (gen - 2) / (t3 - t2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for th in [int(t) for t in a.threads.split(",")]:
        llm = llama_cpp.Llama(a.gguf, n_ctx=a.prompt + a.gen + 8, n_batch=512, n_threads=th,
                              n_threads_batch=th, verbose=False)
        ours, theirs = [], []
        for _ in range(a.repeat):
            ours.append(run_tandem(a.tandem, a.gguf, th, a.prompt, a.gen))
            theirs.append(run_llamacpp(llm, a.prompt, a.gen))
        del llm
        med = lambda xs, i: statistics.median(x[i] for x in xs)
        row = {"threads": th,
               "tandem_prefill_tok_s": med(ours, 0), "llamacpp_prefill_tok_s": med(theirs, 0),
               "tandem_decode_tok_s": med(ours, 1), "llamacpp_decode_tok_s": med(theirs, 1)}
        row["prefill_ratio"] = row["tandem_prefill_tok_s"] / row["llamacpp_prefill_tok_s"]
        row["decode_ratio"] = row["tandem_decode_tok_s"] / row["llamacpp_decode_tok_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| threads | prefill tok/s tandem | llama.cpp | ratio | decode tok/s tandem | llama.cpp | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['tandem_prefill_tok_s']:.1f} | {r['llamacpp_prefill_tok_s']:.1f} | "
              f"{r['prefill_ratio']:.2f} | {r['tandem_decode_tok_s']:.2f} | {r['llamacpp_decode_tok_s']:.2f} | "
              f"{r['decode_ratio']:.2f} |")


if __name__ == "__main__":
    main()
