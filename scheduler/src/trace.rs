//! Chrome/Perfetto timeline traces from `tracing` spans, one lane (trace "thread") per device.
//!
//! Install [`ChromeTraceLayer`] on a `tracing_subscriber` registry; the trace file is written when
//! the [`TraceGuard`] is dropped or [`TraceGuard::finish`] is called. Open the file in
//! `ui.perfetto.dev` or `chrome://tracing`.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! let (layer, guard) = tandem_scheduler::trace::chrome_trace_layer("trace.json");
//! tracing_subscriber::registry().with(layer).init();
//! // ... run requests ...
//! guard.finish().expect("write trace");
//! ```
//!
//! # Lanes
//! A span's lane is its `lane` field (`"npu"`, `"cpu"`, `"scheduler"`, …). A span without one
//! takes its parent's lane at creation, and a root span without one goes to `"scheduler"`. The
//! lane may also be filled in later with `span.record("lane", …)` (declare it as
//! `lane = tracing::field::Empty`); children created before that keep the lane they inherited.
//!
//! Lanes have fixed trace thread ids: `npu` = 1, `cpu` = 2, `scheduler` = 3, other lanes 4, 5, …
//! in order of first use. Chrome and Perfetto draw each thread id as a stack of properly nested
//! slices, so spans of one lane that overlap without nesting (two sessions decoding on two CPU
//! threads at once) are moved to sub-lanes named `cpu#2`, `cpu#3`, … (thread id `1000 * lane id
//! + n - 1`); a span stays on the sub-lane of its closest same-lane ancestor where it can.
//!
//! # Events
//! - Every span becomes a complete event (`"ph": "X"`) lasting from the span's creation to its
//!   close (its last handle dropped), so a span created on one thread and dropped on another
//!   (`queue_wait`) is measured end to end. `ts`/`dur` are microseconds since
//!   [`chrome_trace_layer`] was called, `cat` is the lane, `args` holds every field recorded on
//!   the span, including those recorded later. Spans still open when the trace is written are
//!   cut at that moment and get `"unfinished": true` in `args`.
//! - A `tracing` event with a `lane` field becomes an instant event (`"ph": "i"`) on that lane,
//!   named after its message (or its callsite name when it has none). Events without a `lane`
//!   field are left out.
//!
//! # Span names (the contract the engine emits and tools read)
//! - `request` (lane `scheduler`): `session`, `prompt_tokens`. Parent of the spans below.
//! - `queue_wait` (lane of the device it waits for): `session`.
//! - `prefill_chunk` (lane `npu` or `cpu`): `lane`, `session`, `chunk`, `tokens`, `padded_to`,
//!   and `htp_cycles` recorded after the chunk ran (HTP simulator estimate; declare it `Empty`).
//! - `handoff` (lane `cpu`, where the KV copy runs): `session`, `bytes`, `layers`.
//! - `decode_step` (lane `cpu`): `session`, `step`.
//!
//! [`lanes_overlap`] checks a written trace for work on two devices at the same time.
//!
//! Thread safety: the layer and guard are `Send + Sync`; spans may be created, recorded and closed
//! on any thread. All bookkeeping sits behind one mutex, taken once per span operation.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Lane of root spans that name none.
pub const DEFAULT_LANE: &str = "scheduler";

/// Field that names a span's or event's lane.
pub const LANE_FIELD: &str = "lane";

/// Lanes with fixed thread ids, in thread-id order starting at 1.
const FIXED_LANES: [&str; 3] = ["npu", "cpu", "scheduler"];

/// Thread ids of sub-lanes are `SUB_LANE_STRIDE * base_tid + n - 1` for sub-lane `#n`.
const SUB_LANE_STRIDE: u64 = 1000;

/// Returns the layer to install and the guard that writes `path` when dropped.
pub fn chrome_trace_layer(path: impl Into<PathBuf>) -> (ChromeTraceLayer, TraceGuard) {
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        state: Mutex::new(State::default()),
    });
    let layer = ChromeTraceLayer {
        shared: Arc::clone(&shared),
    };
    let guard = TraceGuard {
        shared,
        path: path.into(),
        written: false,
    };
    (layer, guard)
}

/// `tracing_subscriber` layer that records spans for a Chrome trace; see the module docs.
#[derive(Clone)]
pub struct ChromeTraceLayer {
    shared: Arc<Shared>,
}

/// Writes the trace file when dropped (errors are printed to stderr) or on [`TraceGuard::finish`].
///
/// Once written, the layer stops recording. Nothing is written if the process ends without
/// running destructors (`std::process::exit`, an aborting panic).
pub struct TraceGuard {
    shared: Arc<Shared>,
    path: PathBuf,
    written: bool,
}

impl TraceGuard {
    /// Where the trace will be written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trace as it would be written now, without writing it or stopping the recording.
    pub fn snapshot(&self) -> Value {
        let now = self.shared.elapsed_ns();
        render(&self.shared.lock(), now)
    }

    /// Writes the trace file (creating its folder) and stops recording.
    pub fn finish(mut self) -> io::Result<()> {
        self.written = true;
        self.write()
    }

    fn write(&self) -> io::Result<()> {
        let trace = {
            let now = self.shared.elapsed_ns();
            let mut state = self.shared.lock();
            state.finished = true;
            let trace = render(&state, now);
            // Nothing more will be rendered; give the memory back.
            state.closed = Vec::new();
            state.open = HashMap::new();
            state.instants = Vec::new();
            trace
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut out = BufWriter::new(fs::File::create(&self.path)?);
        serde_json::to_writer(&mut out, &trace)?;
        out.flush()
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if !self.written {
            self.written = true;
            if let Err(e) = self.write() {
                eprintln!("tandem: could not write trace {}: {e}", self.path.display());
            }
        }
    }
}

/// True when some complete event of lane `a` (sub-lanes included) overlaps in time with some
/// complete event of lane `b` in a trace written by this module. Events that merely touch
/// (one ends when the other starts) do not overlap. With `a == b`, two different events must
/// overlap.
pub fn lanes_overlap(trace: &Value, a: &str, b: &str) -> bool {
    let spans_of = |lane: &str| -> Vec<(usize, f64, f64)> {
        trace_events(trace)
            .enumerate()
            .filter(|(_, e)| e["ph"] == "X" && e["cat"] == lane)
            .filter_map(|(i, e)| {
                let ts = e["ts"].as_f64()?;
                let dur = e["dur"].as_f64()?;
                Some((i, ts, ts + dur))
            })
            .collect()
    };
    let (in_a, in_b) = (spans_of(a), spans_of(b));
    in_a.iter()
        .any(|&(i, a0, a1)| in_b.iter().any(|&(j, b0, b1)| i != j && a0 < b1 && b0 < a1))
}

/// The events of a trace, whether it is the object form (`{"traceEvents": [...]}`) or a bare
/// array.
fn trace_events(trace: &Value) -> impl Iterator<Item = &Value> {
    let events = match trace {
        Value::Array(events) => Some(events),
        other => other["traceEvents"].as_array(),
    };
    events.into_iter().flatten()
}

struct Shared {
    origin: Instant,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the data usable; keep tracing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Default)]
struct State {
    finished: bool,
    next_key: u64,
    /// Lane name → base thread id.
    lanes: HashMap<String, u64>,
    open: HashMap<u64, SpanRecord>,
    closed: Vec<SpanRecord>,
    instants: Vec<InstantEvent>,
}

impl State {
    fn lane_tid(&mut self, lane: &str) -> u64 {
        if let Some(&tid) = self.lanes.get(lane) {
            return tid;
        }
        let tid = match FIXED_LANES.iter().position(|l| *l == lane) {
            Some(i) => i as u64 + 1,
            None => {
                let taken = self.lanes.values().copied().max().unwrap_or(0);
                taken.max(FIXED_LANES.len() as u64) + 1
            }
        };
        self.lanes.insert(lane.to_owned(), tid);
        tid
    }
}

/// Key of a span in [`State`]; stored in the span's extensions. `tracing` ids can be reused
/// after a span closes, these are not.
struct SpanKey(u64);

struct SpanRecord {
    key: u64,
    parent: Option<u64>,
    name: &'static str,
    lane: String,
    start_ns: u64,
    end_ns: u64,
    fields: Map<String, Value>,
}

struct InstantEvent {
    name: String,
    lane: String,
    ts_ns: u64,
    fields: Map<String, Value>,
}

/// Collects field values as JSON.
#[derive(Default)]
struct JsonVisitor {
    fields: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        self.fields.insert(field.name().to_owned(), value);
    }

    fn lane(&self) -> Option<String> {
        self.fields.get(LANE_FIELD).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.put(field, v);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl<S> Layer<S> for ChromeTraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let start_ns = self.shared.elapsed_ns();
        let Some(span) = ctx.span(id) else { return };
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<SpanKey>().map(|k| k.0));

        let mut state = self.shared.lock();
        if state.finished {
            return;
        }
        let lane = visitor
            .lane()
            .or_else(|| {
                parent
                    .and_then(|p| state.open.get(&p))
                    .map(|p| p.lane.clone())
            })
            .unwrap_or_else(|| DEFAULT_LANE.to_owned());
        state.lane_tid(&lane);
        let key = state.next_key;
        state.next_key += 1;
        state.open.insert(
            key,
            SpanRecord {
                key,
                parent,
                name: attrs.metadata().name(),
                lane,
                start_ns,
                end_ns: start_ns,
                fields: visitor.fields,
            },
        );
        drop(state);
        span.extensions_mut().insert(SpanKey(key));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(key) = span_key(&ctx, id) else {
            return;
        };
        let mut visitor = JsonVisitor::default();
        values.record(&mut visitor);
        let lane = visitor.lane();

        let mut state = self.shared.lock();
        if let Some(lane) = &lane {
            state.lane_tid(lane);
        }
        if let Some(rec) = state.open.get_mut(&key) {
            rec.fields.extend(visitor.fields);
            if let Some(lane) = lane {
                rec.lane = lane;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let ts_ns = self.shared.elapsed_ns();
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let Some(lane) = visitor.lane() else { return };
        let name = match visitor.fields.get("message") {
            Some(Value::String(m)) => m.clone(),
            _ => event.metadata().name().to_owned(),
        };

        let mut state = self.shared.lock();
        if state.finished {
            return;
        }
        state.lane_tid(&lane);
        state.instants.push(InstantEvent {
            name,
            lane,
            ts_ns,
            fields: visitor.fields,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let end_ns = self.shared.elapsed_ns();
        let Some(key) = span_key(&ctx, &id) else {
            return;
        };
        let mut state = self.shared.lock();
        if let Some(mut rec) = state.open.remove(&key) {
            rec.end_ns = end_ns.max(rec.start_ns);
            state.closed.push(rec);
        }
    }
}

fn span_key<S>(ctx: &Context<'_, S>, id: &Id) -> Option<u64>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    let ext = span.extensions();
    ext.get::<SpanKey>().map(|k| k.0)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn sub_lane_tid(base: u64, sub: usize) -> u64 {
    if sub == 0 {
        base
    } else {
        SUB_LANE_STRIDE * base + sub as u64
    }
}

fn sub_lane_name(lane: &str, sub: usize) -> String {
    if sub == 0 {
        lane.to_owned()
    } else {
        format!("{lane}#{}", sub + 1)
    }
}

/// Builds the Chrome trace JSON; spans still open are cut at `now_ns`.
fn render(state: &State, now_ns: u64) -> Value {
    let cut: Vec<SpanRecord> = state
        .open
        .values()
        .map(|r| {
            let mut fields = r.fields.clone();
            fields.insert("unfinished".to_owned(), true.into());
            SpanRecord {
                key: r.key,
                parent: r.parent,
                name: r.name,
                lane: r.lane.clone(),
                start_ns: r.start_ns,
                end_ns: now_ns.max(r.start_ns),
                fields,
            }
        })
        .collect();
    let mut all: Vec<&SpanRecord> = state.closed.iter().chain(&cut).collect();
    // Parents start no later than their children, so start order places parents first.
    all.sort_by_key(|r| (r.start_ns, r.key));

    let by_key: HashMap<u64, &SpanRecord> = all.iter().map(|r| (r.key, *r)).collect();
    let sub_of = assign_sub_lanes(&all, &by_key);

    let mut events = Vec::with_capacity(all.len() + state.instants.len() + 8);
    events.push(json!({
        "ph": "M", "name": "process_name", "pid": 1, "tid": 0,
        "args": { "name": "tandem" },
    }));

    // One metadata pair per lane and sub-lane in use, ordered by thread id.
    let mut used: Vec<(u64, String)> = Vec::new();
    for (lane, &base) in &state.lanes {
        let subs = all
            .iter()
            .filter(|r| &r.lane == lane)
            .map(|r| sub_of[&r.key])
            .max();
        let has_instants = state.instants.iter().any(|i| &i.lane == lane);
        let top = match (subs, has_instants) {
            (Some(top), _) => top,
            (None, true) => 0,
            (None, false) => continue,
        };
        for sub in 0..=top {
            used.push((sub_lane_tid(base, sub), sub_lane_name(lane, sub)));
        }
    }
    used.sort();
    for (tid, name) in &used {
        events.push(json!({
            "ph": "M", "name": "thread_name", "pid": 1, "tid": tid,
            "args": { "name": name },
        }));
        events.push(json!({
            "ph": "M", "name": "thread_sort_index", "pid": 1, "tid": tid,
            "args": { "sort_index": tid },
        }));
    }

    for r in &all {
        let tid = sub_lane_tid(state.lanes[&r.lane], sub_of[&r.key]);
        events.push(json!({
            "ph": "X",
            "name": r.name,
            "cat": r.lane,
            "pid": 1,
            "tid": tid,
            "ts": us(r.start_ns),
            "dur": us(r.end_ns - r.start_ns),
            "args": r.fields,
        }));
    }
    for i in &state.instants {
        events.push(json!({
            "ph": "i",
            "s": "t",
            "name": i.name,
            "cat": i.lane,
            "pid": 1,
            "tid": state.lanes[&i.lane],
            "ts": us(i.ts_ns),
            "args": i.fields,
        }));
    }

    json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// Places each span (sorted by start) on a sub-lane of its lane where it nests properly: every
/// sub-lane keeps the stack of spans still open at the current start time, and a span fits when
/// that stack is empty or its top encloses the span. The sub-lane of the closest same-lane
/// ancestor is tried first so a session's spans stay together.
fn assign_sub_lanes(
    all: &[&SpanRecord],
    by_key: &HashMap<u64, &SpanRecord>,
) -> HashMap<u64, usize> {
    // Lane → per-sub-lane stacks of end times.
    let mut stacks: HashMap<&str, Vec<Vec<u64>>> = HashMap::new();
    let mut sub_of: HashMap<u64, usize> = HashMap::with_capacity(all.len());
    for r in all {
        let preferred = same_lane_ancestor(r, by_key).and_then(|a| sub_of.get(&a).copied());
        let subs = stacks.entry(r.lane.as_str()).or_default();
        for stack in subs.iter_mut() {
            // Spans are visited in start order, so anything ended by now never matters again.
            while stack.last().is_some_and(|&end| end <= r.start_ns) {
                stack.pop();
            }
        }
        let fits = |stack: &Vec<u64>| stack.last().is_none_or(|&end| end >= r.end_ns);
        let chosen = preferred
            .filter(|&p| subs.get(p).is_some_and(fits))
            .or_else(|| subs.iter().position(fits))
            .unwrap_or_else(|| {
                subs.push(Vec::new());
                subs.len() - 1
            });
        subs[chosen].push(r.end_ns);
        sub_of.insert(r.key, chosen);
    }
    sub_of
}

fn same_lane_ancestor(r: &SpanRecord, by_key: &HashMap<u64, &SpanRecord>) -> Option<u64> {
    let mut cur = r.parent;
    while let Some(key) = cur {
        let p = by_key.get(&key)?;
        if p.lane == r.lane {
            return Some(key);
        }
        cur = p.parent;
    }
    None
}
