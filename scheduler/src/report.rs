//! Output files of `tandem bench`: one row per (policy, chunk, prompt length, repeat) written as
//! JSON (with the run's metadata), CSV, and an SVG plot of TTFT and decode speed against prompt
//! length with one line per policy (and chunk size), at the median over repeats.
//!
//! The SVG is drawn by `plotters` without its font features: text goes into `<text>` elements
//! and the viewer's fonts render it, so nothing here needs font files or C libraries.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// File names written into the output folder.
pub const JSON_FILE: &str = "bench.json";
pub const CSV_FILE: &str = "bench.csv";
pub const SVG_FILE: &str = "bench.svg";

/// CSV columns, in the order of [`BenchRow`]'s fields.
pub const CSV_COLUMNS: [&str; 13] = [
    "policy",
    "prompt_len",
    "chunk",
    "repeat",
    "prefill_device",
    "ttft_ms",
    "prefill_tok_s",
    "decode_tok_s",
    "handoff_bytes",
    "handoff_ms",
    "htp_cycles",
    "htp_prefill_ms_est",
    "fallback",
];

/// One measured request of a bench run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Prefill placement asked for: `npu`, `cpu` or `auto`.
    pub policy: String,
    pub prompt_len: usize,
    /// NPU chunk size (AR-N graph), `None` when the policy has no chunking choice.
    pub chunk: Option<usize>,
    /// Index of this repeat, from 0.
    pub repeat: usize,
    /// Where prefill actually ran (differs from `policy` after `auto` or a fallback).
    pub prefill_device: String,
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub handoff_bytes: u64,
    pub handoff_ms: f64,
    /// HTP cycles summed over the prefill chunks, from the QNN HTP simulator's profiling.
    pub htp_cycles: Option<u64>,
    /// HTP execute time measured on a device (`None` on x86_64 hosts, whose simulator time is
    /// host emulation time).
    pub htp_prefill_ms_est: Option<f64>,
    /// Why the request left its planned device, if it did.
    pub fallback: Option<String>,
}

impl BenchRow {
    /// Name of the plot series this row belongs to: the policy, plus the chunk size if any.
    pub fn series_name(&self) -> String {
        match self.chunk {
            Some(chunk) => format!("{} chunk={chunk}", self.policy),
            None => self.policy.clone(),
        }
    }

    fn csv_fields(&self) -> [String; 13] {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(T::to_string).unwrap_or_default()
        }
        [
            self.policy.clone(),
            self.prompt_len.to_string(),
            opt(&self.chunk),
            self.repeat.to_string(),
            self.prefill_device.clone(),
            self.ttft_ms.to_string(),
            self.prefill_tok_s.to_string(),
            self.decode_tok_s.to_string(),
            self.handoff_bytes.to_string(),
            self.handoff_ms.to_string(),
            opt(&self.htp_cycles),
            opt(&self.htp_prefill_ms_est),
            opt(&self.fallback),
        ]
    }
}

/// Paths of the files [`write_bench_report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchFiles {
    pub json: PathBuf,
    pub csv: PathBuf,
    pub svg: PathBuf,
}

/// Writes `bench.json` (`{"meta": meta, "rows": [...]}`), `bench.csv` and `bench.svg` into `dir`,
/// creating it if needed.
pub fn write_bench_report(dir: &Path, rows: &[BenchRow], meta: &Value) -> io::Result<BenchFiles> {
    fs::create_dir_all(dir)?;
    let files = BenchFiles {
        json: dir.join(JSON_FILE),
        csv: dir.join(CSV_FILE),
        svg: dir.join(SVG_FILE),
    };

    let json = serde_json::json!({ "meta": meta, "rows": rows });
    let mut json_text = serde_json::to_string_pretty(&json)?;
    json_text.push('\n');
    fs::write(&files.json, json_text)?;

    fs::write(&files.csv, to_csv(rows))?;

    let svg = render_svg(rows).map_err(|e| io::Error::other(format!("drawing bench plot: {e}")))?;
    fs::write(&files.svg, svg)?;
    Ok(files)
}

/// RFC 4180 CSV: comma-separated, CRLF-free (`\n` line ends), fields quoted when they hold a
/// comma, quote or line break; missing values are empty.
pub fn to_csv(rows: &[BenchRow]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        let fields = row.csv_fields();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_field(&mut out, field);
        }
        out.push('\n');
    }
    out
}

fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Median of the finite values, `None` if there are none.
fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A Markdown table of the medians over repeats, one line per (policy, chunk, prompt length):
/// what `tandem bench` prints and what goes into `docs/benchmarks.md`.
pub fn summary_table(rows: &[BenchRow]) -> String {
    let mut groups: BTreeMap<(String, Option<usize>, usize), Vec<&BenchRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.policy.clone(), r.chunk, r.prompt_len))
            .or_default()
            .push(r);
    }
    let mut out = String::from(
        "| policy | chunk | prompt | prefill on | TTFT ms | prefill tok/s | decode tok/s | \
         handoff KiB | handoff ms | HTP device prefill ms | fallback |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let fmt = |v: Option<f64>, d: usize| v.map_or("–".to_string(), |x| format!("{x:.d$}"));
    for ((policy, chunk, len), group) in groups {
        let med = |f: fn(&BenchRow) -> f64| median(group.iter().map(|r| f(r)));
        let mut devices: Vec<&str> = group.iter().map(|r| r.prefill_device.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        let htp = median(group.iter().filter_map(|r| r.htp_prefill_ms_est));
        let fallback = group
            .iter()
            .find_map(|r| r.fallback.as_deref())
            .unwrap_or("");
        out.push_str(&format!(
            "| {policy} | {} | {len} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            chunk.map_or("–".to_string(), |c| c.to_string()),
            devices.join("/"),
            fmt(med(|r| r.ttft_ms), 1),
            fmt(med(|r| r.prefill_tok_s), 1),
            fmt(med(|r| r.decode_tok_s), 1),
            fmt(med(|r| r.handoff_bytes as f64 / 1024.0), 1),
            fmt(med(|r| r.handoff_ms), 2),
            fmt(htp, 2),
            fallback.replace('|', "/"),
        ));
    }
    out
}

/// One line of a panel: (prompt length, median value) sorted by prompt length.
type Series = Vec<(f64, f64)>;

/// Series per name for one metric, medians over repeats.
fn series_of(rows: &[BenchRow], metric: fn(&BenchRow) -> f64) -> BTreeMap<String, Series> {
    let mut groups: BTreeMap<String, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    for row in rows {
        groups
            .entry(row.series_name())
            .or_default()
            .entry(row.prompt_len)
            .or_default()
            .push(metric(row));
    }
    groups
        .into_iter()
        .map(|(name, by_len)| {
            let points = by_len
                .into_iter()
                .filter_map(|(len, values)| Some((len.max(1) as f64, median(values)?)))
                .collect();
            (name, points)
        })
        .collect()
}

struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    series: BTreeMap<String, Series>,
}

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 520;

fn render_svg(rows: &[BenchRow]) -> Result<String, Box<dyn std::error::Error>> {
    let repeats = rows.iter().map(|r| r.repeat + 1).max().unwrap_or(0);
    let panels = [
        Panel {
            title: "Time to first token",
            y_label: "TTFT (ms)",
            series: series_of(rows, |r| r.ttft_ms),
        },
        Panel {
            title: "Decode speed",
            y_label: "decode (tok/s)",
            series: series_of(rows, |r| r.decode_tok_s),
        },
    ];
    // Every series keeps its color in both panels.
    let names: Vec<&String> = panels[0].series.keys().collect();
    let color_of = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap_or(0);
        Palette99::pick(i).to_rgba()
    };

    // Ticks at the measured prompt lengths, which a log axis would otherwise skip.
    let mut lens: Vec<f64> = rows.iter().map(|r| r.prompt_len.max(1) as f64).collect();
    lens.sort_by(f64::total_cmp);
    lens.dedup();
    let (min_len, max_len) = match (lens.first(), lens.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => (1.0, 1024.0),
    };
    // Pad the log axis so end points are not on the frame.
    let (x_lo, x_hi) = (min_len / 1.25, max_len * 1.25);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let subtitle = format!("median over {repeats} repeat(s)");
        let root = root.titled(
            &format!("tandem bench ({subtitle})"),
            ("sans-serif", 22).into_font(),
        )?;
        let areas = root.split_evenly((1, 2));
        let legend_at = [
            SeriesLabelPosition::UpperLeft,
            SeriesLabelPosition::LowerLeft,
        ];
        for ((area, panel), legend_at) in areas.iter().zip(&panels).zip(legend_at) {
            let y_max = panel
                .series
                .values()
                .flatten()
                .map(|&(_, y)| y)
                .fold(0.0_f64, f64::max);
            let y_hi = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
            let y_decimals = if y_hi >= 20.0 {
                0
            } else if y_hi >= 2.0 {
                1
            } else {
                2
            };

            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    (x_lo..x_hi).log_scale().with_key_points(lens.clone()),
                    0.0..y_hi,
                )?;
            chart
                .configure_mesh()
                .x_desc("prompt length (tokens)")
                .y_desc(panel.y_label)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.y_decimals$}"))
                .draw()?;

            for (name, points) in &panel.series {
                let color = color_of(name);
                chart
                    .draw_series(
                        LineSeries::new(points.iter().copied(), color.stroke_width(2))
                            .point_size(3),
                    )?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            if !panel.series.is_empty() {
                chart
                    .configure_series_labels()
                    .position(legend_at)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}
