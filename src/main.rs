//! The `tandem` command line: `run`, `logits`, `info`, `devices` and `compile` over the facade in
//! `lib.rs`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tandem::{
    ChatMessage, GenerateRequest, LoadOptions, Model, ModelSource, NpuOptions, SamplingParams,
    WeightFormat,
};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "On-device LLM runtime: prefill on the NPU, decode on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it to stdout; stats go to stderr.
    Run(RunArgs),
    /// One forward pass over the prompt; prints the last position's logits and every position's argmax as JSON.
    Logits(LogitsArgs),
    /// Print the parsed model spec and every tensor's type and size.
    Info(InfoArgs),
    /// List the compute devices (delegates) tandem can use here, or why each is unavailable.
    Devices(DevicesArgs),
    /// Prepare the QNN prefill graphs ahead of time and store their context binaries in a folder.
    Compile(CompileArgs),
}

#[derive(Args, Clone)]
struct NpuArgs {
    /// AR-N chunk sizes of the NPU prefill graphs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    chunks: Vec<usize>,
    /// Context length of the NPU graphs (0 = the model's, capped at 1024).
    #[arg(long = "ctx", default_value_t = 0)]
    npu_ctx: usize,
    /// Folder holding libQnnHtp.so (else TANDEM_QNN_LIB_DIR, QNN_SDK_ROOT/lib/<arch>, system path).
    #[arg(long)]
    qnn_lib: Option<PathBuf>,
    /// Context-binary cache folder (else TANDEM_QNN_CACHE_DIR or ~/.cache/tandem/qnn).
    #[arg(long)]
    qnn_cache: Option<PathBuf>,
    /// Target SoC model for ahead-of-time preparation (QNN's numbering, e.g. 57 = SM8650).
    #[arg(long)]
    soc: Option<u32>,
    /// Target HTP architecture for ahead-of-time preparation (e.g. 75).
    #[arg(long)]
    htp_arch: Option<u32>,
    /// HTP performance mode: burst, sustained_high_performance, high_performance, balanced,
    /// low_balanced, high_power_saver, power_saver, low_power_saver, extreme_power_saver, default.
    #[arg(long)]
    perf_mode: Option<tandem::qnn::PerfMode>,
}

impl NpuArgs {
    fn options(&self, profiling: bool) -> NpuOptions {
        NpuOptions {
            chunks: self.chunks.clone(),
            ctx: self.npu_ctx,
            lib_dir: self.qnn_lib.clone(),
            cache_dir: self.qnn_cache.clone(),
            soc_model: self.soc,
            htp_arch: self.htp_arch,
            profiling,
            perf_mode: self.perf_mode,
        }
    }
}

#[derive(Args)]
struct DevicesArgs {
    /// Folder holding libQnnHtp.so (else TANDEM_QNN_LIB_DIR, QNN_SDK_ROOT/lib/<arch>, system path).
    #[arg(long)]
    qnn_lib: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompileArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    npu: NpuArgs,
    /// Output folder for the context binaries (the cache folder `--qnn-cache` points at later).
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Args)]
struct ModelArgs {
    /// Model: a Hugging Face directory (config.json + *.safetensors) or a .gguf file.
    /// Without it, the small model embedded in the binary is used.
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// CPU threads (default: physical cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// How the CPU holds weights: auto (as stored), f32, f16, bf16, q8_0 or q4_0 (converted at load).
    #[arg(long, default_value = "auto")]
    cpu_weights: String,
}

#[derive(Args)]
struct PromptArgs {
    /// Prompt text.
    #[arg(short, long, conflicts_with = "tokens")]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids (no BOS is added).
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Wrap the prompt as one user message in the model's chat template.
    #[arg(long)]
    chat: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens below min-p × the top probability (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalty for tokens seen in the last 64 (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0x7A4D_E300)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Context length in tokens (0 = the model's, capped at 4096).
    #[arg(long, default_value_t = 0)]
    ctx: usize,
    /// Print one JSON object (tokens, text, stats) at the end instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Print JSON (the only output format; accepted for symmetry with `run`).
    #[arg(long)]
    json: bool,
    /// Also print the logits of every position (`all_logits`, [n][vocab]).
    #[arg(long)]
    all: bool,
    /// Where the forward pass runs: `cpu`, or `npu` (QNN HTP prefill graphs).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "npu"])]
    device: String,
    #[command(flatten)]
    npu: NpuArgs,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Logits(a) => logits(a),
        Command::Info(a) => info(a),
        Command::Devices(a) => devices(a),
        Command::Compile(a) => compile(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ModelArgs) -> anyhow::Result<Model> {
    let source = match &args.model {
        Some(p) => ModelSource::Path(p.clone()),
        None => ModelSource::Embedded,
    };
    let opts = LoadOptions {
        threads: args.threads,
        cpu_weights: WeightFormat::parse(&args.cpu_weights)?,
    };
    Ok(Model::load(&source, &opts)?)
}

fn prompt_tokens(
    model: &Model,
    p: &PromptArgs,
    default_text: Option<&str>,
) -> anyhow::Result<Vec<u32>> {
    if let Some(t) = &p.tokens {
        return Ok(t.clone());
    }
    let text = match (&p.prompt, default_text) {
        (Some(t), _) => t.as_str(),
        (None, Some(d)) => d,
        (None, None) => anyhow::bail!("give a prompt with -p TEXT or --tokens 1,2,3"),
    };
    Ok(if p.chat {
        model.encode_chat(&[ChatMessage {
            role: "user".into(),
            content: text.into(),
        }])?
    } else {
        model.encode_prompt(text)?
    })
}

/// Prompt used by `tandem run` when none is given, so the README's first command shows output.
const DEFAULT_PROMPT: &str = "Once upon a time";

fn run(a: RunArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let default_prompt = a.model.model.is_none().then_some(DEFAULT_PROMPT);
    let prompt = prompt_tokens(&model, &a.prompt, default_prompt)?;
    let req = GenerateRequest {
        prompt: prompt.clone(),
        max_new_tokens: a.n_predict,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: 64,
            seed: a.seed,
        },
        stop_strings: a.stop.clone(),
    };
    let mut cache = model.new_cache(a.ctx);
    let mut stdout = std::io::stdout().lock();
    if !a.json && a.prompt.tokens.is_none() && a.prompt.prompt.is_none() {
        // Show the default prompt so the continuation reads naturally.
        write!(stdout, "{DEFAULT_PROMPT}")?;
    }
    let out = model.generate(&mut cache, &req, &mut |piece| {
        if !a.json {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    let s = &out.stats;
    let stats = json!({
        "load_ms": model.load_ms,
        "prompt_tokens": s.prompt_tokens,
        "generated_tokens": s.generated_tokens,
        "prefill_ms": s.prefill_ms,
        "prefill_tok_s": s.prefill_tok_s,
        "ttft_ms": s.ttft_ms,
        "decode_ms": s.decode_ms,
        "decode_tok_s": s.decode_tok_s,
        "stop_reason": out.stop_reason,
        "threads": model.cpu.pool().n_threads(),
        "cpu_isa": tandem::cpu::kernels::isa_name(),
        "cpu_weights": model.cpu.weight_dtype().name(),
        "prefill_device": "cpu",
        "decode_device": "cpu",
    });
    if a.json {
        let doc = json!({
            "prompt_tokens": prompt,
            "generated_tokens": out.generated,
            "text": out.text,
            "stats": stats,
        });
        writeln!(stdout, "{doc}")?;
    } else {
        writeln!(stdout)?;
        eprintln!(
            "load {:.0} ms | prompt {} tok | prefill {:.1} tok/s | ttft {:.1} ms | decode {:.1} tok/s ({} tok, {}) | {} threads, {}, weights {}",
            model.load_ms,
            s.prompt_tokens,
            s.prefill_tok_s,
            s.ttft_ms,
            s.decode_tok_s,
            s.generated_tokens,
            serde_json::to_value(out.stop_reason)?.as_str().unwrap_or("?"),
            model.cpu.pool().n_threads(),
            tandem::cpu::kernels::isa_name(),
            model.cpu.weight_dtype(),
        );
    }
    Ok(())
}

fn logits(a: LogitsArgs) -> anyhow::Result<()> {
    let _ = a.json;
    let model = load(&a.model)?;
    let tokens = prompt_tokens(&model, &a.prompt, None)?;
    if tokens.is_empty() {
        anyhow::bail!("the prompt tokenized to nothing");
    }
    let vocab = model.loaded.spec.vocab_size;
    let all = if a.device == "npu" {
        let mut prefill = model.npu_prefill(&a.npu.options(false))?;
        let report = prefill.report();
        eprintln!(
            "npu: {:?} context in {:.0} ms ({})",
            report.source,
            report.prepare_time.as_secs_f64() * 1e3,
            report
                .cache_path
                .as_ref()
                .map_or("no cache".to_string(), |p| p.display().to_string())
        );
        prefill.run_prompt(&tokens)?.0
    } else {
        model.logits_all(&tokens)?
    };
    let rows: Vec<&[f32]> = all.chunks_exact(vocab).collect();
    let argmax: Vec<usize> = rows
        .iter()
        .map(|r| tandem::scheduler::sampling::argmax(r))
        .collect();
    let mut doc = json!({
        "tokens": tokens,
        "last_logits": rows.last().copied().unwrap_or_default(),
        "argmax": argmax,
    });
    if a.all {
        doc["all_logits"] = json!(rows);
    }
    println!("{doc}");
    Ok(())
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let m = &model.loaded;
    let s = &m.spec;
    println!("model: {}", m.path.display());
    println!("format: {:?}", m.format);
    println!("arch: {}", s.arch.name());
    println!(
        "layers {} | hidden {} | intermediate {} | heads {} (kv {}) | head_dim {} | vocab {}",
        s.n_layers,
        s.hidden_size,
        s.intermediate_size,
        s.n_heads,
        s.n_kv_heads,
        s.head_dim,
        s.vocab_size
    );
    println!(
        "rms_norm_eps {} | rope theta {} scaling {:?} | max positions {} | tied embeddings {} | qkv bias {} | qk norm {}",
        s.rms_norm_eps,
        s.rope.theta,
        s.rope.scaling,
        s.max_position_embeddings,
        s.tie_word_embeddings,
        s.qkv_bias,
        s.qk_norm
    );
    println!(
        "bos {:?} | eos {:?} | chat template: {}",
        s.bos_token_id,
        s.eos_token_ids,
        if model.chat_template.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    let tensors = m.weights.tensors();
    let total: usize = tensors.iter().map(|t| t.data.len()).sum();
    let params: usize = tensors.iter().map(|t| t.numel()).sum();
    println!(
        "tensors: {} | parameters {:.2} M | {:.2} MiB as stored | CPU compute weights {} ({:.2} MiB)",
        tensors.len(),
        params as f64 / 1e6,
        total as f64 / (1 << 20) as f64,
        model.cpu.weight_dtype(),
        model.cpu.weight_bytes() as f64 / (1 << 20) as f64
    );
    for t in tensors {
        println!(
            "  {:<40} {:>5} {:?} {} bytes",
            t.name,
            t.dtype.name(),
            t.shape,
            t.data.len()
        );
    }
    Ok(())
}

fn devices(a: DevicesArgs) -> anyhow::Result<()> {
    let threads = tandem::cpu::pool::physical_cores();
    let isa = tandem::cpu::kernels::isa_name();
    let qnn = tandem::qnn::probe(a.qnn_lib.as_deref());
    let coreml = "not implemented yet (Core ML prefill is a later issue; it needs macOS/iOS)";
    if a.json {
        let qnn_json = match &qnn {
            tandem::qnn::Availability::Available(i) => json!({
                "available": true,
                "library": i.library_path,
                "provider": i.provider,
                "core_api": i.core_api,
                "backend_api": i.backend_api,
                "build_id": i.build_id,
                "soc_model": i.soc_model,
                "htp_arch": i.htp_arch,
            }),
            tandem::qnn::Availability::Unavailable(why) => {
                json!({"available": false, "reason": why})
            }
        };
        let doc = json!({
            "cpu": {"available": true, "isa": isa, "physical_cores": threads},
            "qnn": qnn_json,
            "coreml": {"available": false, "reason": coreml},
        });
        println!("{doc}");
        return Ok(());
    }
    println!("cpu     available   {isa}, {threads} physical cores");
    match qnn {
        tandem::qnn::Availability::Available(i) => println!(
            "qnn     available   {} | provider {} | core API {} | backend API {} | build {}{}",
            i.library_path.display(),
            i.provider,
            i.core_api,
            i.backend_api,
            i.build_id,
            i.htp_arch
                .map_or(String::new(), |a| format!(" | HTP arch v{a}"))
        ),
        tandem::qnn::Availability::Unavailable(why) => println!("qnn     unavailable {why}"),
    }
    println!("coreml  unavailable {coreml}");
    Ok(())
}

fn compile(a: CompileArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", a.out.display()))?;
    let mut opts = a.npu.options(false);
    opts.cache_dir = Some(a.out.clone());
    let prefill = model.npu_prefill(&opts)?;
    let r = prefill.report();
    println!(
        "{:?} AR-{:?} ctx {} in {:.0} ms: {} ({} bytes, weight sharing {})",
        r.source,
        prefill.chunk_sizes(),
        prefill.ctx(),
        r.prepare_time.as_secs_f64() * 1e3,
        r.cache_path
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        r.binary_bytes,
        r.weight_sharing
    );
    Ok(())
}
