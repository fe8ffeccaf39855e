"""Makes tiny random Llama (llama3 RoPE), Qwen2 and Qwen3 checkpoints with transformers for tests/real_files.rs.
Run in an empty folder: python3 make_hf.py && for m in llama qwen2 qwen3; do for t in f16 q8_0; do
python3 convert_fake_vocab.py $m --outtype $t --outfile $m-$t.gguf; done; done
then TANDEM_GRAPHS_REAL_DIR=<folder> cargo test -p tandem-graphs --test real_files."""
import torch, transformers as T
torch.manual_seed(0)
common = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5)
cfgs = {
  "llama": T.LlamaConfig(**common, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, rope_theta=500000.0, tie_word_embeddings=False),
  "qwen2": T.Qwen2Config(**common, tie_word_embeddings=True),
  "qwen3": T.Qwen3Config(**common, head_dim=32, tie_word_embeddings=True),
}
for name, cfg in cfgs.items():
    cls = {"llama": T.LlamaForCausalLM, "qwen2": T.Qwen2ForCausalLM, "qwen3": T.Qwen3ForCausalLM}[name]
    m = cls(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    m.save_pretrained(name)
    print("wrote", name)
