"""Runs llama.cpp's convert_hf_to_gguf.py (path in LLAMA_CPP_DIR) with a stand-in vocabulary, since the
tiny random checkpoints from make_hf.py have no tokenizer. Only the weights and hyper-parameters matter here."""
import sys
import os
sys.path.insert(0, os.environ.get("LLAMA_CPP_DIR", "/work/main/.cache/llama_cpp_python-0.3.36/vendor/llama.cpp"))
import convert_hf_to_gguf as c
def fake_vocab(self):
    self.gguf_writer.add_tokenizer_model("gpt2")
    self.gguf_writer.add_token_list([f"t{i}" for i in range(self.hparams["vocab_size"])])
    self.gguf_writer.add_bos_token_id(1)
    self.gguf_writer.add_eos_token_id(2)
import conversion.base as b
for meth in ("_set_vocab_sentencepiece", "_set_vocab_gpt2", "_set_vocab_llama_hf", "_set_vocab_qwen"):
    if hasattr(b.TextModel, meth):
        setattr(b.TextModel, meth, fake_vocab)
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[1:]
c.main()
