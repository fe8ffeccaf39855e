//! Chat templates rendered by minijinja against transformers' `apply_chat_template` output
//! (recorded by tests/data/tokenizer/make.py), plus template discovery.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tandem_graphs::chat::{chat_template_from_gguf, find_chat_template, ChatMessage, ChatTemplate};
use tandem_graphs::tokenizer::{parse_token_ids, Tokenizer};
use tandem_graphs::{GgufValue, Metadata};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer")
}

fn template_source(name: &str) -> String {
    std::fs::read_to_string(data_dir().join("chat").join(format!("{name}.jinja"))).unwrap()
}

fn opt_string(v: &Json) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[test]
fn renders_like_transformers() {
    let bytes = std::fs::read(data_dir().join("chat_reference.json")).unwrap();
    let cases: Vec<Json> = serde_json::from_slice(&bytes).unwrap();
    assert!(cases.len() >= 19);
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let template = ChatTemplate::new(
            &template_source(name),
            opt_string(&case["bos_token"]),
            opt_string(&case["eos_token"]),
        )
        .unwrap();
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let got = template.render(&messages, agp);
        let label = format!("{name} / {} / agp={agp}", case["conversation"]);
        match (&case["rendered"], &case["error"]) {
            (Json::String(want), _) => assert_eq!(got.unwrap(), *want, "{label}"),
            (_, Json::String(msg)) => {
                let err = got.unwrap_err().to_string();
                assert!(
                    err.contains(msg.as_str()),
                    "{label}: `{err}` should contain `{msg}`"
                );
            }
            _ => panic!("bad reference entry {label}"),
        }
    }
}

#[test]
fn rendered_prompt_tokenizes_special_markers() {
    let tok = Tokenizer::from_file(&data_dir().join("qwen2/tokenizer.json")).unwrap();
    let t = ChatTemplate::new(&template_source("qwen2"), None, Some("<|im_end|>".into())).unwrap();
    let prompt = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
    let ids = tok.encode(&prompt, false).unwrap();
    let start = tok.token_to_id("<|im_start|>").unwrap();
    assert_eq!(ids[0], start);
    assert_eq!(ids.iter().filter(|&&id| id == start).count(), 3);
}

#[test]
fn helpers_and_errors() {
    let t = ChatTemplate::new(
        "{{ strftime_now('%Y') }}|{{ '  x '.strip() }}|{{ 'a,b'.split(',') | length }}|{{ tools is none }}",
        None,
        None,
    )
    .unwrap();
    let out = t.render(&[], false).unwrap();
    let (year, rest) = out.split_once('|').unwrap();
    assert!(
        year.len() == 4 && year.parse::<u32>().unwrap() >= 2024,
        "{out}"
    );
    assert_eq!(rest, "x|2|True"); // Python spelling, as Jinja2 prints it

    // Syntax errors surface at construction, unknown filters and exceptions at render.
    let err = ChatTemplate::new("{% for %}", None, None).unwrap_err();
    assert!(err.to_string().contains("chat template"), "{err}");
    let t = ChatTemplate::new("{{ raise_exception('no system role') }}", None, None).unwrap();
    let err = t.render(&[], false).unwrap_err();
    assert!(err.to_string().contains("no system role"), "{err}");
    assert!(ChatTemplate::new("{{ 1 | no_such_filter }}", None, None)
        .and_then(|t| t.render(&[], false))
        .is_err());
    // Missing BOS/EOS render as empty strings, as in transformers when the tokenizer has none.
    let t = ChatTemplate::new("[{{ bos_token }}{{ eos_token }}]", None, None).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "[]");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tandem-chat-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn finds_templates() {
    let d = TempDir::new("find");
    assert_eq!(find_chat_template(&d.0).unwrap(), None);

    std::fs::write(
        d.0.join("tokenizer_config.json"),
        r#"{"eos_token": "</s>"}"#,
    )
    .unwrap();
    assert_eq!(find_chat_template(&d.0).unwrap(), None);

    std::fs::write(
        d.0.join("tokenizer_config.json"),
        r#"{"chat_template": "A{{ x }}"}"#,
    )
    .unwrap();
    assert_eq!(
        find_chat_template(&d.0).unwrap().as_deref(),
        Some("A{{ x }}")
    );

    std::fs::write(
        d.0.join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
    )
    .unwrap();
    assert_eq!(find_chat_template(&d.0).unwrap().as_deref(), Some("D"));

    std::fs::write(
        d.0.join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#,
    )
    .unwrap();
    let err = find_chat_template(&d.0).unwrap_err();
    assert!(err.to_string().contains("default"), "{err}");

    std::fs::write(d.0.join("tokenizer_config.json"), "{not json").unwrap();
    assert!(find_chat_template(&d.0).is_err());

    // chat_template.jinja wins over tokenizer_config.json.
    std::fs::write(d.0.join("chat_template.jinja"), "J").unwrap();
    assert_eq!(find_chat_template(&d.0).unwrap().as_deref(), Some("J"));

    let mut meta = Metadata::new();
    assert_eq!(chat_template_from_gguf(&meta), None);
    meta.insert(
        "tokenizer.chat_template".into(),
        GgufValue::String("{{ messages }}".into()),
    );
    assert_eq!(
        chat_template_from_gguf(&meta).as_deref(),
        Some("{{ messages }}")
    );
}

#[test]
fn token_id_lists_parse_like_the_cli() {
    assert_eq!(parse_token_ids("1,2,3").unwrap(), [1, 2, 3]);
    assert_eq!(parse_token_ids(" 7 , 8 ,9 ").unwrap(), [7, 8, 9]);
    assert_eq!(parse_token_ids("+1,0004294967295").unwrap(), [1, u32::MAX]);
    for bad in [
        "",
        " ",
        "1,,2",
        "1,",
        ",",
        "-1",
        "1 2",
        "4294967296",
        "0x10",
        "\u{661}",
    ] {
        let err = parse_token_ids(bad).unwrap_err().to_string();
        assert!(err.contains("token"), "{bad:?}: {err}");
    }
    let err = parse_token_ids("5,x,6").unwrap_err().to_string();
    assert!(err.contains("item 2 `x`"), "{err}");
}

/// Renders on a thread so that a template that never finishes fails the test instead of hanging
/// it.
fn render_within(source: &str, secs: u64) -> tandem_hal::Result<String> {
    let source = source.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = ChatTemplate::new(&source, None, None).unwrap();
        let _ = tx.send(t.render(&[ChatMessage::new("user", "Hi")], true));
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("rendering did not finish within {secs} s"))
}

/// A chat template is outside data (it ships in the GGUF or tokenizer_config.json): one that
/// loops for ever or prints gigabytes must fail with an error. Regression inputs in
/// fuzz/regressions/chat_template/.
#[test]
fn runaway_templates_are_stopped() {
    let nested = "{% for a in range(99999) %}{% for b in range(99999) %}{{ '' }}{% endfor %}\
                  {% endfor %}";
    let err = render_within(nested, 30).unwrap_err().to_string();
    assert!(err.contains("instructions"), "{err}");

    let huge = "{% for i in range(128) %}{{ 'x' * 1048576 }}{% endfor %}";
    let err = render_within(huge, 30).unwrap_err().to_string();
    assert!(err.contains("exceeds 64 MiB"), "{err}");

    // A long but ordinary conversation is well within both limits.
    let t = ChatTemplate::new(&template_source("llama3"), Some("<s>".into()), None).unwrap();
    let messages: Vec<ChatMessage> = (0..5000)
        .map(|i| ChatMessage::new(["user", "assistant"][i % 2], format!("message {i}")))
        .collect();
    assert!(t.render(&messages, true).unwrap().contains("message 4999"));
}
