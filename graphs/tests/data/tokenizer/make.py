#!/usr/bin/env python3
"""Regenerates the tokenizer / chat-template fixtures used by graphs/tests/tokenizer_*.rs.

Dev-time only (the Rust tests read the committed outputs). Needs: tokenizers, transformers, gguf,
sentencepiece, protobuf. Run from anywhere:  python3 graphs/tests/data/tokenizer/make.py

Outputs (in this folder):
  <name>/tokenizer.json, <name>/tokenizer_config.json   Hugging Face layout, names: qwen2, llama3, gpt2, spm
  <name>.gguf                                           metadata-only GGUF, llama.cpp converter key layout
  spm/tokenizer.model                                   the SentencePiece model the spm fixtures come from
  reference.json                                        ids / decoded strings from the Python libraries
  chat/*.jinja, chat_reference.json                     chat templates and transformers' renderings

Everything is deterministic (single-threaded training on a fixed corpus).
"""

import io
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# A small corpus with English prose, code, numbers, accents, CJK and a few emoji, so the learned
# merges cover spaces, digits and multi-byte characters.
CORPUS_PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. The dog didn't move; it was sleeping in the sun.",
    "Prefill runs on the accelerator and decode runs on the processor: that's the whole idea.",
    "We'll measure the time to first token, the tokens per second, and the handoff cost.",
    "Numbers like 1234, 2024, 3.14159 and 1,000,000 appear in tables; 42 is the answer.",
    "def forward(x):\n    return x * 2 + 1\n\nfor i in range(10):\n    print(i, forward(i))",
    "    indented line with four spaces\n\ttabbed line\n\n\nthree newlines above",
    "Café, naïve, résumé, über, façade, jalapeño, smörgåsbord, crème brûlée, déjà vu.",
    "Ça va? Élève, À bientôt! Señor Müller aß Äpfel und Öl.",
    "中文测试：你好，世界。今天天气很好，我们去公园散步吧。",
    "日本語のテキストです。こんにちは、世界！ありがとうございます。",
    "한국어 문장도 조금 있습니다. 안녕하세요!",
    "Emoji: 😀 😃 🎉 👍 ❤️ — smiles and hearts 😀😀 everywhere.",
    "Hello, World! HELLO world! hello WORLD? Hello... world!!!",
    "They're here, you've seen it, I'm sure, we'd go, she'll come, it's fine.",
    "Quotes \"double\" and 'single', brackets [a] (b) {c} <d>, symbols @#$%^&*_+=|\\/~`.",
    "A sentence with    multiple     spaces and trailing spaces   ",
    "Line one\nLine two\r\nLine three\n",
]
CORPUS = [p for _ in range(6) for p in CORPUS_PARAGRAPHS]

COMMON_STRINGS = [
    "Hello world",
    "Hello",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces    between  words",
    "line one\nline two\n\n  indented\ttab\r\nend",
    "\n\n\n",
    "digits 1234567890 and 3.14159, 42, 007",
    "Punctuation!? (yes) [no] {maybe}; \"quotes\" 'single' — dash… ok",
    "don't you'll I'm WE'RE they've",
    "Café naïve résumé über façade",
    "Cafe\u0301 decomposed e\u0301",  # combining accent: NFC matters for qwen2
    "中文测试：你好，世界。日本語のテキスト",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "    def f(x):\n        return x + 1\n",
    "a",
    "",
    "zzqxj unseen wordz",
]

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def byte_level(name, split_regex, nfc, specials, user_tokens, bos, eos, add_bos, vocab_size, pre):
    """Trains a byte-level BPE shaped like the family's tokenizer.json and returns its reference data."""
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    if split_regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if name == "llama3":
        # Llama 3's tokenizer.json takes a pre-token whole when it is a vocabulary entry.
        model = json.loads(tok.to_str())
        model["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(model))
    # Added tokens go after the learned vocabulary, as in Qwen2 / Llama 3.
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in user_tokens])
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)

    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    config = {"bos_token": bos, "eos_token": eos, "model_max_length": 4096}
    if name == "llama3":
        # Object form, as older transformers versions saved it.
        config["bos_token"] = {"content": bos, "lstrip": False, "normalized": False, "rstrip": False,
                               "single_word": False, "__type": "AddedToken"}
    write_json(os.path.join(d, "tokenizer_config.json"), config)

    # GGUF as convert_hf_to_gguf.py writes a BPE ("gpt2") vocabulary.
    vocab = tok.get_vocab(with_added_tokens=True)
    added = {t.content: t for t in tok.get_added_tokens_decoder().values()}
    n = max(vocab.values()) + 1
    rev = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(n):
        t = rev[i]
        tokens.append(t)
        if t in added:
            types.append(gguf.TokenType.CONTROL if added[t].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    model = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w = gguf.GGUFWriter(os.path.join(HERE, f"{name}.gguf"), "qwen2" if name == "qwen2" else "llama")
    w.add_tokenizer_model("gpt2")
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(vocab[bos])
    w.add_eos_token_id(vocab[eos])
    w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    return reference(tok, hf, COMMON_STRINGS + extra_strings(specials + user_tokens))


def extra_strings(added):
    a = added[0]
    b = added[-1]
    return [
        f"{a}user\nhi there{b}",
        f"text before{a}  text after {b}\n",
        f"{a}{a}{b}",
    ]


def reference(tok, hf, strings):
    cases = []
    for s in strings:
        ids = tok.encode(s).ids
        ids_plain = tok.encode(s, add_special_tokens=False).ids
        assert hf.encode(s) == ids, (s, hf.encode(s), ids)
        assert hf.encode(s, add_special_tokens=False) == ids_plain
        cases.append(
            {
                "text": s,
                "ids": ids,
                "ids_no_special": ids_plain,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    return {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}


def sentencepiece_fixture():
    """A Llama-1/2-style SentencePiece BPE, its legacy HF tokenizer.json and a "llama" GGUF."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=buf,
        model_type="bpe",
        vocab_size=700,
        hard_vocab_limit=False,
        character_coverage=0.98,  # leave rare characters to byte fallback
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        user_defined_symbols=["<tool>"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    d = os.path.join(HERE, "spm")
    os.makedirs(d, exist_ok=True)
    model_path = os.path.join(d, "tokenizer.model")
    with open(model_path, "wb") as f:
        f.write(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=model_path)

    # transformers' own vocab/merges extraction (merges ordered from the piece scores).
    from transformers.convert_slow_tokenizer import SentencePieceExtractor

    extracted = SentencePieceExtractor(model_path).extract(models.BPE)
    vocab, merges = extracted["vocab"], extracted["merges"]
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    # The "legacy" Llama layout found in Llama 2 / Mistral v0.1 / TinyLlama tokenizer.json files.
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(sp.id_to_piece(i), special=True, normalized=False) for i in (0, 1, 2)])
    tok.add_tokens([AddedToken("<tool>", special=False, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.save(os.path.join(d, "tokenizer.json"))
    write_json(
        os.path.join(d, "tokenizer_config.json"),
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "__type": "AddedToken"},
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "legacy": True,
        },
    )

    # GGUF as convert_hf_to_gguf.py's _create_vocab_sentencepiece writes it.
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        elif sp.id_to_piece(i) == "<tool>":
            t = gguf.TokenType.USER_DEFINED
        else:
            t = gguf.TokenType.NORMAL
        types.append(int(t))
    w = gguf.GGUFWriter(os.path.join(HERE, "spm.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    strings = COMMON_STRINGS + ["<s>hello</s>", "a <tool> call", "before</s> after"]
    ref = reference(tok, hf, strings)
    # SentencePiece itself, for strings without special tokens: what llama.cpp emulates.
    for case in ref["cases"]:
        s = case["text"]
        if "<" not in s:
            case["sentencepiece_ids"] = sp.encode(s)
    return ref


QWEN2_TEMPLATE = """{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Exercises what real templates lean on: trim_blocks/lstrip_blocks on multi-line blocks, Python
# string methods, namespace(), tojson, slicing, raise_exception on bad input.
FEATURES_TEMPLATE = """{% set ns = namespace(system='') %}
{% if messages[0]['role'] == 'system' %}
    {% set ns.system = messages[0]['content'].strip() %}
    {% set loop_messages = messages[1:] %}
{% else %}
    {% set loop_messages = messages %}
{% endif %}
{{ bos_token }}
{% if ns.system %}
[SYS] {{ ns.system | tojson }} [/SYS]
{% endif %}
{% for message in loop_messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if message['role'] == 'user' %}
        {% if message['content'].startswith('/') %}
[CMD] {{ message['content'][1:].split(' ')[0] | upper }}
        {% else %}
[INST] {{ message['content'].strip() }} [/INST]
        {% endif %}
    {% else %}
 {{ message['content'].lstrip() ~ eos_token }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}>{% endif %}
"""

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "Hello!"}],
    "with_system": [
        {"role": "system", "content": "  You are terse. \"Quote\" 日本 😀 \n"},
        {"role": "user", "content": "  What is 2+2?  "},
        {"role": "assistant", "content": "  4"},
        {"role": "user", "content": "/reset now please"},
    ],
    "multi_turn": [
        {"role": "user", "content": "first\nline"},
        {"role": "assistant", "content": "reply one"},
        {"role": "user", "content": "second ünïcödé"},
    ],
}


def chat_fixture():
    d = os.path.join(HERE, "chat")
    os.makedirs(d, exist_ok=True)
    templates = {"qwen2": QWEN2_TEMPLATE, "llama3": LLAMA3_TEMPLATE, "features": FEATURES_TEMPLATE}
    tokenizer_dirs = {"qwen2": "qwen2", "llama3": "llama3", "features": "spm"}
    out = []
    for name, src in templates.items():
        with open(os.path.join(d, f"{name}.jinja"), "w", encoding="utf-8") as f:
            f.write(src)
        tdir = os.path.join(HERE, tokenizer_dirs[name])
        cfg = json.load(open(os.path.join(tdir, "tokenizer_config.json"), encoding="utf-8"))

        def content(v):
            return v["content"] if isinstance(v, dict) else v

        bos, eos = content(cfg.get("bos_token")), content(cfg.get("eos_token"))
        hf = PreTrainedTokenizerFast(
            tokenizer_file=os.path.join(tdir, "tokenizer.json"), bos_token=bos, eos_token=eos
        )
        for conv_name, conv in CONVERSATIONS.items():
            for agp in (False, True):
                try:
                    rendered = hf.apply_chat_template(
                        conv, chat_template=src, tokenize=False, add_generation_prompt=agp
                    )
                    err = None
                except Exception as e:  # jinja2 TemplateError from raise_exception
                    rendered, err = None, str(e)
                out.append(
                    {
                        "template": name,
                        "bos_token": bos,
                        "eos_token": eos,
                        "conversation": conv_name,
                        "messages": conv,
                        "add_generation_prompt": agp,
                        "rendered": rendered,
                        "error": err,
                    }
                )
    # A conversation the features template must reject.
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(HERE, "spm", "tokenizer.json"),
                                 bos_token="<s>", eos_token="</s>")
    try:
        hf.apply_chat_template(bad, chat_template=FEATURES_TEMPLATE, tokenize=False)
        raise SystemExit("features template accepted a non-alternating conversation")
    except Exception as e:
        out.append({"template": "features", "bos_token": "<s>", "eos_token": "</s>",
                    "conversation": "bad_alternation", "messages": bad, "add_generation_prompt": False,
                    "rendered": None, "error": str(e)})
    write_json(os.path.join(HERE, "chat_reference.json"), out)


def main():
    ref = {
        "qwen2": byte_level(
            "qwen2", QWEN2_SPLIT, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ["<think>"],
            None, "<|im_end|>", False, 560, "qwen2",
        ),
        "llama3": byte_level(
            "llama3", LLAMA3_SPLIT, False,
            ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            [], "<|begin_of_text|>", "<|eot_id|>", True, 560, "llama-bpe",
        ),
        "gpt2": byte_level(
            "gpt2", None, False, ["<|endoftext|>"], [], None, "<|endoftext|>", False, 520, None,
        ),
        "spm": sentencepiece_fixture(),
    }
    write_json(os.path.join(HERE, "reference.json"), ref)
    chat_fixture()
    for f in sorted(os.listdir(HERE)):
        p = os.path.join(HERE, f)
        if os.path.isfile(p):
            print(f"{os.path.getsize(p):>8}  {f}", file=sys.stderr)


if __name__ == "__main__":
    main()
