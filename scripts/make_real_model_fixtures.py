"""References for the real-model tests (`tests/tests/real_models.rs`), from llama.cpp on the same
GGUF files: for each prompt, the token ids llama.cpp's tokenizer gives, its greedy continuation,
the top-1/top-2 logit margin and the top-5 (id, logit) at every step.

Chat prompts are rendered from the file's own chat template with Jinja2 exactly as Hugging Face
`transformers` renders them (`apply_chat_template`: a sandboxed environment with trim_blocks and
lstrip_blocks, `raise_exception`, the bos/eos tokens as variables, add_generation_prompt), then
tokenized by llama.cpp with special tokens parsed and none added.

Run by `cargo xtask real-fixtures` (which builds llama.cpp and `scripts/llama_ref.c`):
    python scripts/make_real_model_fixtures.py --llama-ref BIN --models DIR --out tests/fixtures/real
"""

import argparse
import json
import os
import subprocess
import tempfile

import jinja2
import jinja2.ext
import jinja2.sandbox
from gguf import GGUFReader

STEPS = 24

# Plain prompts: the tokenizer's special tokens are added as the model's metadata says.
PLAIN = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "In 1905, Albert Einstein published 4 papers; the 3rd was about",
    "Café, naïve, 東京 and ☕ — the weather today",
]
CHAT = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
]

MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def render_chat(template, messages, bos, eos):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
    )


def run_ref(binary, model, text, add_special, parse_special):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        out = subprocess.run(
            [binary, model, path, str(STEPS), str(int(add_special)), str(int(parse_special))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(path)
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-ref", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--llama-cpp-version", default="")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, file in MODELS.items():
        model = os.path.join(args.models, file)
        reader = GGUFReader(model)
        tokens = field(reader, "tokenizer.ggml.tokens")
        template = field(reader, "tokenizer.chat_template")
        bos_id = field(reader, "tokenizer.ggml.bos_token_id")
        eos_id = field(reader, "tokenizer.ggml.eos_token_id")
        bos = tokens[bos_id] if bos_id is not None else ""
        eos = tokens[eos_id] if eos_id is not None else ""
        cases = []
        for text in PLAIN:
            ref = run_ref(args.llama_ref, model, text, True, False)
            cases.append({"kind": "plain", "text": text, **ref})
        for messages in CHAT:
            text = render_chat(template, messages, bos, eos)
            ref = run_ref(args.llama_ref, model, text, False, True)
            cases.append({"kind": "chat", "messages": messages, "rendered": text, **ref})
        doc = {
            "model": file,
            "source": "llama.cpp " + args.llama_cpp_version,
            "steps": STEPS,
            "cases": cases,
        }
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {name}.json ({len(cases)} cases)")


if __name__ == "__main__":
    main()
