//! The `tandem` command line: `run`, `chat`, `bench`, `logits`, `info`, `devices` and `compile`
//! over the facade in `lib.rs`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tandem::hal::Availability;
use tandem::qnn::{QnnDelegate, QnnOptions};
use tandem::scheduler::report::{self, BenchRow};
use tandem::scheduler::trace::{chrome_trace_layer, TraceGuard};
use tandem::{
    ChatMessage, Conversation, Engine, EngineOptions, GenerateRequest, LoadOptions, Model,
    ModelSource, NpuOptions, PrefillPolicy, RequestOutput, SamplingParams, TurnOptions,
    WeightFormat,
};
use tracing_subscriber::prelude::*;

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
    /// Multi-turn chat on stdin/stdout in one session (the KV cache is kept between turns).
    Chat(ChatArgs),
    /// Measure TTFT and tokens/s per prefill policy, chunk size and prompt length; writes
    /// bench.json, bench.csv and bench.svg.
    Bench(BenchArgs),
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
    /// AR-N chunk sizes of the NPU prefill graphs (comma-separated; `--chunk` is an alias;
    /// default: the delegate's, 32,128).
    #[arg(long, alias = "chunk", value_delimiter = ',')]
    chunks: Vec<usize>,
    /// Context length in tokens, of the session and of the NPU graphs (0 = the model's, capped
    /// at 1024 when the NPU may be used, else 4096).
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
    /// HTP weight sharing between the chunk graphs: on, off (default: off on x86_64 hosts, whose
    /// simulator cannot restore shared binaries; on elsewhere, and for `compile`, with several
    /// chunk sizes).
    #[arg(long, value_parser = parse_on_off)]
    weight_sharing: Option<bool>,
    /// HTP performance mode: burst, sustained_high_performance, high_performance, balanced,
    /// low_balanced, high_power_saver, power_saver, low_power_saver, extreme_power_saver, default.
    #[arg(long)]
    perf_mode: Option<tandem::qnn::PerfMode>,
}

impl NpuArgs {
    /// The QNN delegate's own options.
    fn qnn_options(&self) -> QnnOptions {
        QnnOptions {
            lib_dir: self.qnn_lib.clone(),
            cache_dir: self.qnn_cache.clone(),
            soc_model: self.soc,
            htp_arch: self.htp_arch,
            perf_mode: self.perf_mode,
            weight_sharing: self.weight_sharing,
        }
    }

    /// The NPU options of an engine: the QNN delegate (the only one compiled in) and how to
    /// prepare it.
    fn options(&self, profiling: bool) -> NpuOptions {
        NpuOptions {
            delegate: Some(tandem::delegates::qnn(self.qnn_options())),
            chunks: self.chunks.clone(),
            ctx: self.npu_ctx,
            profiling,
        }
    }
}

/// `--tokens 1,2,3`, parsed by the same function the fuzzer exercises.
#[derive(Clone, Debug)]
struct TokenList(Vec<u32>);

fn parse_tokens_arg(s: &str) -> Result<TokenList, String> {
    tandem::graphs::tokenizer::parse_token_ids(s)
        .map(TokenList)
        .map_err(|e| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got `{s}`")),
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
    /// How the CPU holds weights: auto (as stored), f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1 (converted at load).
    #[arg(long, default_value = "auto")]
    cpu_weights: String,
}

#[derive(Args)]
struct PromptArgs {
    /// Prompt text.
    #[arg(short, long, conflicts_with = "tokens")]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids (no BOS is added).
    #[arg(long, value_parser = parse_tokens_arg)]
    tokens: Option<TokenList>,
    /// Wrap the prompt as one user message in the model's chat template.
    #[arg(long, conflicts_with = "tokens")]
    chat: bool,
}

#[derive(Args)]
struct SamplingArgs {
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
    /// Keep generating through end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
}

impl SamplingArgs {
    fn turn(&self, chat: bool) -> TurnOptions {
        let r = self.request(Vec::new());
        TurnOptions {
            max_tokens: r.max_new_tokens,
            sampling: r.sampling,
            stop_strings: r.stop_strings,
            ignore_eos: r.ignore_eos,
            chat,
        }
    }

    fn request(&self, prompt: Vec<u32>) -> GenerateRequest {
        GenerateRequest {
            prompt,
            max_new_tokens: self.n_predict,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: 64,
                seed: self.seed,
            },
            stop_strings: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        }
    }
}

#[derive(Args)]
struct EngineArgs {
    /// Where prefill runs: npu (QNN HTP; falls back to the CPU, saying why, if it cannot),
    /// cpu, or auto (per request, from measured costs). Decode runs on the CPU.
    /// Default: auto on Arm devices, cpu on x86 hosts (where the HTP is a simulator).
    #[arg(long, default_value_t = PrefillPolicy::host_default())]
    prefill: PrefillPolicy,
    #[command(flatten)]
    npu: NpuArgs,
    /// Do not collect QNN's per-chunk HTP cycle counts (detailed profiling).
    #[arg(long)]
    no_htp_profile: bool,
    /// Largest number of prompt tokens in one CPU prefill step.
    #[arg(long, default_value_t = 128)]
    cpu_chunk: usize,
    /// Write a Chrome/Perfetto trace (one lane per device) to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            prefill: self.prefill,
            ctx: self.npu.npu_ctx,
            npu: self.npu.options(!self.no_htp_profile),
            cpu_prefill_chunk: self.cpu_chunk,
            ..EngineOptions::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Print one JSON object (tokens, text, stats) at the end instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// System message that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Print each turn's stats line to stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt lengths in tokens (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "32,128,512")]
    prompt_lens: Vec<usize>,
    /// Prefill policies to compare (comma-separated: npu, cpu, auto).
    #[arg(long, value_delimiter = ',', default_value = "npu,cpu,auto")]
    policies: Vec<PrefillPolicy>,
    /// NPU chunk sizes to compare, one engine each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    chunks: Vec<usize>,
    /// Measured runs per configuration (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Tokens generated per run (greedy).
    #[arg(long, default_value_t = 32)]
    gen: usize,
    /// Output folder for bench.json, bench.csv and bench.svg.
    #[arg(long)]
    out: PathBuf,
    /// Folder holding libQnnHtp.so (else TANDEM_QNN_LIB_DIR, QNN_SDK_ROOT/lib/<arch>, system path).
    #[arg(long)]
    qnn_lib: Option<PathBuf>,
    /// Context-binary cache folder (else TANDEM_QNN_CACHE_DIR or ~/.cache/tandem/qnn).
    #[arg(long)]
    qnn_cache: Option<PathBuf>,
    /// Seed of the random prompt tokens.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write a Chrome/Perfetto trace of the whole bench to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
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

/// Logs to stderr (`TANDEM_LOG`, default `warn`) and, with `--trace FILE`, the engine's spans to
/// a Chrome/Perfetto trace written when the returned guard finishes.
fn init_tracing(trace: Option<&PathBuf>) -> Option<TraceGuard> {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        );
    let (chrome, guard) = match trace {
        Some(path) => {
            let (layer, guard) = chrome_trace_layer(path);
            let filter = tracing_subscriber::filter::Targets::new()
                .with_target("tandem::engine", tracing::Level::INFO);
            (Some(layer.with_filter(filter)), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt).with(chrome).init();
    guard
}

fn main() -> ExitCode {
    // Usage errors are bad input like any other: exit code 1 (help and --version: 0).
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let trace = match &cli.command {
        Command::Run(a) => a.engine.trace.as_ref(),
        Command::Chat(a) => a.engine.trace.as_ref(),
        Command::Bench(a) => a.trace.as_ref(),
        _ => None,
    };
    // A trace file that cannot be written is bad input: say so before any work starts.
    if let Some(path) = trace {
        if let Err(e) = check_writable_file(path) {
            eprintln!("error: --trace {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let guard = init_tracing(trace);
    let mut result = match cli.command {
        Command::Run(a) => run(a),
        Command::Chat(a) => chat(a),
        Command::Bench(a) => bench(a),
        Command::Logits(a) => logits(a),
        Command::Info(a) => info(a),
        Command::Devices(a) => devices(a),
        Command::Compile(a) => compile(a),
    };
    if let Some(g) = guard {
        let path = g.path().to_path_buf();
        if let Err(e) = g.finish() {
            result = result.and(Err(anyhow::anyhow!(
                "writing trace {}: {e}",
                path.display()
            )));
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes sure `path` can be written as a file before any work: it is not a folder, and its
/// folder exists (created here if missing, as the trace writer would).
fn check_writable_file(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a folder; give a file name".into());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create folder {}: {e}", parent.display()))?;
    }
    Ok(())
}

fn load(args: &ModelArgs) -> anyhow::Result<Model> {
    let source = match &args.model {
        Some(p) => ModelSource::Path(p.clone()),
        None => tandem::embedded_model(),
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
        return Ok(t.0.clone());
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

fn engine(model: Model, args: &EngineArgs) -> anyhow::Result<Engine> {
    Ok(Engine::new(Arc::new(model), args.options())?)
}

/// The `stats` object of `run --json` and one turn of `chat`.
fn stats_json(engine: &Engine, out: &RequestOutput) -> serde_json::Value {
    let model = engine.model();
    let mut stats = serde_json::to_value(&out.stats).unwrap_or_default();
    stats["load_ms"] = json!(model.load_ms);
    stats["stop_reason"] = json!(out.stop_reason);
    stats["threads"] = json!(model.cpu.pool().n_threads());
    stats["cpu_isa"] = json!(tandem::cpu::kernels::isa_name());
    stats["cpu_weights"] = json!(model.cpu.weight_dtype().name());
    stats["ctx"] = json!(engine.ctx());
    stats
}

/// The human stats line on stderr.
fn stats_line(engine: &Engine, out: &RequestOutput) -> String {
    let s = &out.stats;
    let model = engine.model();
    let mut line = format!(
        "prompt {} tok ({} cached) | prefill {} {:.1} tok/s in {} chunk(s) | ttft {:.1} ms | decode {:.1} tok/s ({} tok, {})",
        s.prompt_tokens,
        s.cached_tokens,
        s.prefill_device,
        s.prefill_tok_s,
        s.chunks.len(),
        s.ttft_ms,
        s.decode_tok_s,
        s.generated_tokens,
        serde_json::to_value(out.stop_reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    );
    if s.handoff_bytes > 0 {
        line += &format!(
            " | handoff {:.1} KiB in {:.2} ms",
            s.handoff_bytes as f64 / 1024.0,
            s.handoff_ms
        );
    }
    match (s.htp_cycles, s.htp_prefill_ms_est) {
        (Some(c), Some(ms)) => line += &format!(" | HTP {c} cycles, {ms:.2} ms on the device"),
        (Some(c), None) => {
            line += &format!(" | HTP {c} simulator cycles (host emulation, not device time)")
        }
        _ => {}
    }
    if let Some(est) = s.qnn_cost_model_ms {
        line += &format!(" | QNN cost model ≈ {est:.2} ms (Qualcomm's estimate)");
    }
    if let Some(f) = &s.fallback {
        line += &format!(" | fallback: {f}");
    }
    line += &format!(
        " | {} threads, {}, weights {}",
        model.cpu.pool().n_threads(),
        tandem::cpu::kernels::isa_name(),
        model.cpu.weight_dtype()
    );
    line
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let default_prompt = a.model.model.is_none().then_some(DEFAULT_PROMPT);
    let prompt = prompt_tokens(&model, &a.prompt, default_prompt)?;
    let load_ms = model.load_ms;
    let engine = engine(model, &a.engine)?;
    let session = engine.new_session();
    let mut stdout = std::io::stdout().lock();
    if !a.json && a.prompt.tokens.is_none() && a.prompt.prompt.is_none() {
        // Show the default prompt so the continuation reads naturally.
        write!(stdout, "{DEFAULT_PROMPT}")?;
    }
    let out = session.generate(a.sampling.request(prompt.clone()), |t| {
        if !a.json {
            let _ = stdout.write_all(t.text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    if a.json {
        let doc = json!({
            "prompt_tokens": prompt,
            "generated_tokens": out.generated,
            "text": out.text,
            "stats": stats_json(&engine, &out),
        });
        writeln!(stdout, "{doc}")?;
    } else {
        writeln!(stdout)?;
        eprintln!("load {load_ms:.0} ms | {}", stats_line(&engine, &out));
    }
    Ok(())
}

fn chat(a: ChatArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let has_template = model.chat_template.is_some();
    let engine = engine(model, &a.engine)?;
    let mut conversation = Conversation::new(&engine);
    if !has_template {
        eprintln!(
            "note: {} has no chat template; each line is appended to the conversation as plain text",
            engine.model().loaded.path.display()
        );
    }
    if let (Some(system), true) = (&a.system, has_template) {
        conversation.set_system(system)?;
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut stdout = std::io::stdout();
    if interactive {
        eprintln!("tandem chat: one message per line; /reset starts over, /quit ends");
    }
    let mut input = stdin.lock();
    let mut raw = Vec::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        // A line that is not UTF-8 is refused on its own; the conversation goes on.
        let Ok(line) = std::str::from_utf8(&raw) else {
            eprintln!("error: that line is not valid UTF-8; it was ignored");
            continue;
        };
        let text = line.trim();
        match text {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                conversation.reset()?;
                if let (Some(system), true) = (&a.system, has_template) {
                    conversation.set_system(system)?;
                }
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        // Without a template, turns are plain text, one line each.
        let piece = if has_template || conversation.session().tokens()?.is_empty() {
            text.to_string()
        } else {
            format!("\n{text}")
        };
        // A failed turn (context overflow, a model error, …) is reported and undone by the
        // conversation; it goes on.
        let out = conversation.say(&piece, &a.sampling.turn(has_template), |t| {
            let _ = stdout.write_all(t.text.as_bytes());
            let _ = stdout.flush();
            std::ops::ControlFlow::Continue(())
        });
        writeln!(stdout)?;
        match out {
            Ok(out) => {
                if a.stats {
                    eprintln!("{}", stats_line(&engine, &out));
                }
            }
            Err(e) => {
                eprintln!("error: {e:#} (this turn was dropped; the conversation goes on)");
            }
        }
    }
    Ok(())
}

fn npu_state_json(state: &tandem::NpuState) -> serde_json::Value {
    match state {
        tandem::NpuState::NotRequested => json!({"state": "not_requested"}),
        tandem::NpuState::Ready { chunks, report } => json!({
            "state": "ready",
            "chunks": chunks,
            "context": format!("{:?}", report.source),
            "prepare_ms": report.prepare_time.as_secs_f64() * 1e3,
            "binary_bytes": report.binary_bytes,
            "cache_path": report.cache_path,
        }),
        tandem::NpuState::Unavailable(why) => json!({"state": "unavailable", "reason": why}),
        tandem::NpuState::Disabled(why) => json!({"state": "disabled", "reason": why}),
    }
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.prompt_lens.is_empty() || a.policies.is_empty() || a.repeat == 0 {
        anyhow::bail!("give at least one prompt length, one policy and --repeat ≥ 1");
    }
    let model = Arc::new(load(&a.model)?);
    let spec = &model.loaded.spec;
    let max_len = *a.prompt_lens.iter().max().unwrap_or(&1);
    let ctx = max_len
        .checked_add(a.gen)
        .and_then(|n| n.checked_next_multiple_of(64))
        .filter(|&c| c <= spec.max_position_embeddings)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "longest prompt {max_len} + {} generated tokens does not fit the model's {} \
                 positions",
                a.gen,
                spec.max_position_embeddings
            )
        })?;
    // Random prompt tokens, reproducible from --seed, avoiding special ids at the low end.
    let mut rng = a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vocab = spec.vocab_size as u64;
    let mut prompts = Vec::new();
    for &len in &a.prompt_lens {
        let p: Vec<u32> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (vocab / 8 + rng % (vocab - vocab / 8)) as u32
            })
            .collect();
        prompts.push(p);
    }
    let mut configs: Vec<(PrefillPolicy, Option<usize>)> = Vec::new();
    for &p in &a.policies {
        if p == PrefillPolicy::Cpu {
            configs.push((p, None));
        } else {
            configs.extend(a.chunks.iter().map(|&c| (p, Some(c))));
        }
    }
    let runs = configs.len() * prompts.len() * (a.repeat + 1);
    eprintln!(
        "bench: {} configuration(s) × {} prompt length(s) × ({} + 1 warm-up) runs = {runs} runs, ctx {ctx}",
        configs.len(),
        prompts.len(),
        a.repeat
    );
    let bar = indicatif::ProgressBar::new(runs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut engines_meta = Vec::new();
    for &(policy, chunk) in &configs {
        let npu = NpuOptions {
            delegate: Some(tandem::delegates::qnn(QnnOptions {
                lib_dir: a.qnn_lib.clone(),
                cache_dir: a.qnn_cache.clone(),
                ..QnnOptions::default()
            })),
            chunks: chunk.map(|c| vec![c]).unwrap_or_default(),
            profiling: true,
            ..NpuOptions::default()
        };
        let engine = Engine::new(
            model.clone(),
            EngineOptions {
                prefill: policy,
                ctx,
                npu,
                ..EngineOptions::default()
            },
        )?;
        let costs = engine.costs();
        engines_meta.push(json!({
            "policy": policy,
            "chunk": chunk,
            "npu": npu_state_json(&engine.npu_state()),
            "calibration": {
                "npu_chunk_ms": chunk.and_then(|c| costs.npu_chunk_ms(c)),
                "cpu_prefill_line_ms": costs.cpu_line().map(|(fixed, per_token)| {
                    json!({"fixed": fixed, "per_token": per_token})
                }),
            },
        }));
        for (prompt, &len) in prompts.iter().zip(&a.prompt_lens) {
            for repeat in 0..=a.repeat {
                bar.set_message(format!("{policy} chunk {chunk:?} prompt {len}"));
                let session = engine.new_session();
                let req = GenerateRequest {
                    prompt: prompt.clone(),
                    max_new_tokens: a.gen,
                    sampling: SamplingParams::greedy(),
                    stop_strings: Vec::new(),
                    // Every run times the same number of tokens.
                    ignore_eos: true,
                };
                let out = session.generate(req, |_| {})?;
                bar.inc(1);
                if repeat == 0 {
                    continue; // warm-up
                }
                let s = out.stats;
                rows.push(BenchRow {
                    policy: policy.to_string(),
                    prompt_len: len,
                    chunk,
                    repeat: repeat - 1,
                    prefill_device: s.prefill_device,
                    ttft_ms: s.ttft_ms,
                    prefill_tok_s: s.prefill_tok_s,
                    decode_tok_s: s.decode_tok_s,
                    handoff_bytes: s.handoff_bytes,
                    handoff_ms: s.handoff_ms,
                    htp_cycles: s.htp_cycles,
                    htp_prefill_ms_est: s.htp_prefill_ms_est,
                    fallback: s.fallback,
                });
            }
        }
    }
    bar.finish_and_clear();
    let meta = json!({
        "model": model.loaded.path,
        "arch": spec.arch.name(),
        "ctx": ctx,
        "generated_tokens": a.gen,
        "repeat": a.repeat,
        "threads": model.cpu.pool().n_threads(),
        "cpu_isa": tandem::cpu::kernels::isa_name(),
        "cpu_weights": model.cpu.weight_dtype().name(),
        "htp_cycles_source": tandem::scheduler::stats::htp_cycles_source(),
        "engines": engines_meta,
        "tandem_version": env!("CARGO_PKG_VERSION"),
    });
    let files = report::write_bench_report(&a.out, &rows, &meta)?;
    print!("{}", report::summary_table(&rows));
    eprintln!(
        "wrote {}, {} and {}",
        files.json.display(),
        files.csv.display(),
        files.svg.display()
    );
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
        let mut prefill = QnnDelegate::new(a.npu.qnn_options())
            .builder(&model.prepare_request(&a.npu.options(false))?)
            .build(&model.loaded.spec, &model.loaded.weights)?;
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
    let delegates = tandem::delegates::probe_all(QnnOptions {
        lib_dir: a.qnn_lib.clone(),
        ..QnnOptions::default()
    });
    if a.json {
        println!("{}", tandem::delegates::devices_json(&delegates));
        return Ok(());
    }
    println!("cpu     available   {isa}, {threads} physical cores");
    for (name, availability) in &delegates {
        match availability {
            Availability::Available(d) => {
                let detail = |k: &str| {
                    d.details
                        .iter()
                        .find(|(key, _)| key == k)
                        .map_or("-", |(_, v)| v.as_str())
                };
                println!(
                    "{name:<7} available   {} | provider {} | core API {} | backend API {} | build {} | target {}{}",
                    d.library.display(),
                    detail("provider"),
                    detail("core_api"),
                    detail("backend_api"),
                    detail("build_id"),
                    d.device,
                    if d.simulated {
                        " | x86_64 HTP simulator: results are real, timings are host emulation"
                    } else {
                        ""
                    }
                );
            }
            Availability::Unavailable(u) => println!("{name:<7} unavailable {u}"),
        }
    }
    Ok(())
}

fn compile(a: CompileArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    std::fs::create_dir_all(&a.out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", a.out.display()))?;
    let mut opts = a.npu.qnn_options();
    opts.cache_dir = Some(a.out.clone());
    let request = model.prepare_request(&a.npu.options(false))?;
    // Compiled binaries are for the device: share one weight copy between chunk graphs unless
    // told otherwise.
    if opts.weight_sharing.is_none() && request.chunk_sizes.len() > 1 {
        opts.weight_sharing = Some(true);
    }
    let prefill = QnnDelegate::new(opts)
        .builder(&request)
        .build(&model.loaded.spec, &model.loaded.weights)?;
    let r = prefill.report();
    println!(
        "{:?} AR-{:?} ctx {} for {} in {:.0} ms: {} ({} bytes, weight sharing {})",
        r.source,
        prefill.chunk_sizes(),
        prefill.ctx(),
        prefill.device().info().target,
        r.prepare_time.as_secs_f64() * 1e3,
        r.cache_path
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string()),
        r.binary_bytes,
        prefill.weight_sharing()
    );
    for e in &r.cost_estimates {
        println!(
            "AR-{}: Qualcomm cost-model estimate {} µs ({}–{} µs; {} cycles) per chunk on the target \
             (the library's model of the SoC, not a measurement)",
            e.chunk, e.exec_us, e.exec_us_lower, e.exec_us_upper, e.cycles
        );
    }
    if prefill.weight_sharing() && cfg!(target_arch = "x86_64") {
        println!(
            "note: weight-shared context binaries run on the device only; the x86_64 HTP \
             simulator cannot restore them (use --weight-sharing off to test one here)"
        );
    }
    Ok(())
}
