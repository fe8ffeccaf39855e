//! `tandem bench` output files: CSV, JSON and the SVG plot.

use std::path::PathBuf;

use serde_json::{json, Value};
use tandem_scheduler::report::{to_csv, write_bench_report, BenchRow, CSV_COLUMNS};

fn row(
    policy: &str,
    chunk: Option<usize>,
    prompt_len: usize,
    repeat: usize,
    ttft_ms: f64,
) -> BenchRow {
    let npu = policy != "cpu";
    BenchRow {
        policy: policy.to_owned(),
        prompt_len,
        chunk,
        repeat,
        prefill_device: if npu { "npu" } else { "cpu" }.to_owned(),
        ttft_ms,
        prefill_tok_s: prompt_len as f64 / ttft_ms * 1000.0,
        decode_tok_s: 40.25 - repeat as f64,
        handoff_bytes: if npu { 1 << 20 } else { 0 },
        handoff_ms: if npu { 1.5 } else { 0.0 },
        htp_cycles: npu.then_some(123_456_789),
        htp_prefill_ms_est: npu.then_some(12.5),
        fallback: None,
    }
}

fn rows() -> Vec<BenchRow> {
    let mut rows = Vec::new();
    for &len in &[32, 128, 512] {
        for repeat in 0..3 {
            rows.push(row(
                "npu",
                Some(32),
                len,
                repeat,
                10.0 + len as f64 / 8.0 + repeat as f64,
            ));
            rows.push(row("npu", Some(128), len, repeat, 20.0 + len as f64 / 16.0));
            rows.push(row("cpu", None, len, repeat, 5.0 + len as f64));
        }
    }
    let mut odd = row("auto", Some(128), 512, 0, 99.5);
    odd.prefill_device = "cpu".to_owned();
    odd.fallback =
        Some("npu failed on chunk 2: \"graph execute\", code 1002\nretried on cpu".to_owned());
    rows.push(odd);
    rows
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Minimal RFC 4180 reader: quoted fields may hold commas, doubled quotes and newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "CSV must end with a newline"
    );
    records
}

#[test]
fn csv_has_header_and_one_quoted_line_per_row() {
    let rows = rows();
    let dir = out_dir("csv");
    let files = write_bench_report(&dir, &rows, &json!({})).unwrap();
    assert_eq!(files.csv, dir.join("bench.csv"));
    let text = std::fs::read_to_string(&files.csv).unwrap();
    assert_eq!(text, to_csv(&rows));
    let records = parse_csv(&text);
    assert_eq!(records.len(), rows.len() + 1);
    assert_eq!(records[0], CSV_COLUMNS);

    // The header names every field of the JSON form, in declaration order.
    let as_json = serde_json::to_value(&rows[0]).unwrap();
    let keys: Vec<&String> = as_json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), CSV_COLUMNS.len());
    for column in CSV_COLUMNS {
        assert!(
            as_json.get(column).is_some(),
            "column {column} is not a BenchRow field"
        );
    }

    for (record, row) in records[1..].iter().zip(&rows) {
        assert_eq!(record.len(), CSV_COLUMNS.len());
        let col =
            |name: &str| record[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()].as_str();
        assert_eq!(col("policy"), row.policy);
        assert_eq!(col("prompt_len").parse::<usize>().unwrap(), row.prompt_len);
        assert_eq!(col("chunk").parse::<usize>().ok(), row.chunk);
        assert_eq!(col("repeat").parse::<usize>().unwrap(), row.repeat);
        assert_eq!(col("prefill_device"), row.prefill_device);
        assert_eq!(col("ttft_ms").parse::<f64>().unwrap(), row.ttft_ms);
        assert_eq!(
            col("prefill_tok_s").parse::<f64>().unwrap(),
            row.prefill_tok_s
        );
        assert_eq!(
            col("decode_tok_s").parse::<f64>().unwrap(),
            row.decode_tok_s
        );
        assert_eq!(
            col("handoff_bytes").parse::<u64>().unwrap(),
            row.handoff_bytes
        );
        assert_eq!(col("handoff_ms").parse::<f64>().unwrap(), row.handoff_ms);
        assert_eq!(col("htp_cycles").parse::<u64>().ok(), row.htp_cycles);
        assert_eq!(
            col("htp_prefill_ms_est").parse::<f64>().ok(),
            row.htp_prefill_ms_est
        );
        assert_eq!(
            Some(col("fallback")).filter(|s| !s.is_empty()),
            row.fallback.as_deref()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_round_trips_with_meta() {
    let rows = rows();
    let dir = out_dir("json");
    let meta =
        json!({ "model": "fixture-llama", "target": "SM8750", "policies": ["npu", "cpu", "auto"] });
    let files = write_bench_report(&dir, &rows, &meta).unwrap();
    let value: Value =
        serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(value["meta"], meta);
    let back: Vec<BenchRow> = serde_json::from_value(value["rows"].clone()).unwrap();
    assert_eq!(back, rows);
    assert_eq!(value["rows"][0]["chunk"], 32);
    assert_eq!(value["rows"][2]["chunk"], Value::Null);
    assert_eq!(value["rows"][2]["htp_cycles"], Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn svg_has_both_panels_and_every_series_in_the_legend() {
    let rows = rows();
    let dir = out_dir("svg");
    let files = write_bench_report(&dir, &rows, &json!({})).unwrap();
    assert_eq!(files.svg, dir.join("bench.svg"));
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')
                .and_then(|(_, rest)| rest.split_once("</text>"))
        })
        .map(|(inner, _)| inner.trim())
        .collect();
    for name in ["npu chunk=32", "npu chunk=128", "cpu", "auto chunk=128"] {
        // Once per panel legend.
        assert_eq!(
            texts.iter().filter(|t| **t == name).count(),
            2,
            "legend entry {name}: {texts:?}"
        );
    }
    for label in [
        "TTFT (ms)",
        "decode (tok/s)",
        "prompt length (tokens)",
        "Time to first token",
        "Decode speed",
    ] {
        assert!(texts.contains(&label), "missing text {label}: {texts:?}");
    }
    // One line per series per panel.
    assert!(svg.matches("<polyline").count() >= 8);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn empty_and_degenerate_inputs_still_write_files() {
    let dir = out_dir("empty");
    let files = write_bench_report(&dir, &[], &Value::Null).unwrap();
    assert_eq!(
        std::fs::read_to_string(&files.csv).unwrap().lines().count(),
        1
    );
    assert!(std::fs::read_to_string(&files.svg)
        .unwrap()
        .starts_with("<svg"));

    // One prompt length, zero and non-finite values.
    let mut one = row("cpu", None, 64, 0, 0.0);
    one.decode_tok_s = f64::NAN;
    let files = write_bench_report(&dir, &[one], &json!({})).unwrap();
    assert!(std::fs::read_to_string(&files.svg).unwrap().contains("cpu"));
    let _ = std::fs::remove_dir_all(&dir);
}
