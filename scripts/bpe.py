"""Reproducible byte-level BPE tokenizers for tandem's fixtures and default model.

Two families are built, matching the pre-tokenization of real model families so that
llama.cpp's converter and tandem's loader see familiar structures:

* ``qwen``:   NFC normalizer, Qwen2's split regex, ChatML special tokens, no BOS added.
* ``llama3``: no normalizer, Llama-3's split regex, Llama-3 special tokens, BOS added by a
              TemplateProcessing post-processor.

Dev-time only (needs the Python ``tokenizers`` package). Written for tandem; no upstream code.
"""

import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# The split regexes are the published pre-tokenizer patterns of each family (data, not code):
# they decide how text is cut before BPE, and llama.cpp keys its own pre-tokenizer on them.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

FAMILIES = {
    "qwen": {
        "split": QWEN2_SPLIT,
        "nfc": True,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "config_bos": "<|endoftext|>",
        "template": CHATML_TEMPLATE,
        # llama.cpp's name for this pre-tokenizer (tokenizer.ggml.pre)
        "ggml_pre": "qwen2",
    },
    "llama3": {
        "split": LLAMA3_SPLIT,
        "nfc": False,
        "specials": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": "<|end_of_text|>",
        "config_bos": "<|begin_of_text|>",
        "template": LLAMA3_TEMPLATE,
        "ggml_pre": "llama-bpe",
    },
}


def train(texts, vocab_size, family):
    """Train a byte-level BPE of exactly ``vocab_size`` entries (specials appended at the end)."""
    fam = FAMILIES[family]
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    if fam["nfc"]:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(fam["split"]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(fam["specials"]),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    got = tok.get_vocab_size()
    if got != vocab_size - len(fam["specials"]):
        raise SystemExit(f"BPE training produced {got} tokens, wanted {vocab_size - len(fam['specials'])}: corpus too small")
    tok.add_special_tokens(fam["specials"])
    byte_level = processors.ByteLevel(trim_offsets=False, add_prefix_space=False, use_regex=False)
    if fam["bos"] is not None:
        bos_id = tok.token_to_id(fam["bos"])
        tok.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{fam['bos']}:0 $A:0",
                    pair=f"{fam['bos']}:0 $A:0 {fam['bos']}:1 $B:1",
                    special_tokens=[(fam["bos"], bos_id)],
                ),
            ]
        )
    else:
        tok.post_processor = byte_level
    return tok


def special_ids(tok, family):
    fam = FAMILIES[family]
    ids = {name: tok.token_to_id(fam[name]) for name in ("eos", "pad", "config_bos")}
    ids["bos"] = tok.token_to_id(fam["bos"]) if fam["bos"] else None
    return ids


def save(tok, family, out_dir, model_max_length):
    """Write tokenizer.json + tokenizer_config.json as Hugging Face expects them."""
    fam = FAMILIES[family]
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    added = {}
    for name in fam["specials"]:
        added[str(tok.token_to_id(name))] = {
            "content": name,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": fam["bos"],
        "eos_token": fam["eos"],
        "pad_token": fam["pad"],
        "unk_token": None,
        "add_bos_token": fam["bos"] is not None,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": fam["template"],
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
