//! Chat templates: the Jinja programs shipped with a model (tokenizer_config.json,
//! chat_template.jinja, or GGUF `tokenizer.chat_template`) that turn a conversation into the prompt
//! text the model was trained on. Rendered with minijinja, set up to behave like the Jinja
//! environment Hugging Face `transformers` uses (`apply_chat_template`).

use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tandem_hal::{Error, Result};

const TEMPLATE_NAME: &str = "chat";

/// Instructions one render may execute. A template comes with the model file, so it is outside
/// data: without a budget, two nested `range(99999)` loops hang the caller. Real templates use
/// a few dozen instructions per message, so this allows conversations of ~100 000 messages.
const RENDER_FUEL: u64 = 5_000_000;

/// Longest rendered prompt, in bytes: far more text than any context window holds, and a bound on
/// what a template that prints `'x' * 99999999` in a loop can make the renderer allocate.
const MAX_RENDERED_BYTES: usize = 64 << 20;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, … (whatever the template knows).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template plus the BOS/EOS texts it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

fn template_err(e: minijinja::Error) -> Error {
    // Append the chain of causes (e.g. the error a filter returned).
    let mut msg = format!("chat template: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Tokenizer(msg)
}

impl ChatTemplate {
    /// Compiles `source`. `bos` / `eos` are the texts of the BOS and EOS tokens, exposed to the
    /// template as `bos_token` / `eos_token` (empty strings when `None`).
    pub fn new(source: &str, bos: Option<String>, eos: Option<String>) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // transformers renders with trim_blocks + lstrip_blocks and drops one trailing newline.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(RENDER_FUEL));
        // Python methods templates call on strings, lists and dicts (.strip(), .startswith(), …).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(template_err)?;
        Ok(ChatTemplate { env, bos, eos })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the header that opens
    /// the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_err)?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_iter([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_deref().unwrap_or(""),
            eos_token => self.eos.as_deref().unwrap_or(""),
            tools => Value::from(()),
        };
        let mut out = CappedOutput::default();
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => {}
            Err(_) if out.full => {
                return Err(Error::Tokenizer(format!(
                    "chat template: the rendered prompt exceeds {} MiB",
                    MAX_RENDERED_BYTES >> 20
                )))
            }
            Err(e) if e.kind() == ErrorKind::OutOfFuel => {
                return Err(Error::Tokenizer(format!(
                    "chat template: rendering stopped after {RENDER_FUEL} instructions \
                     (a loop that does not end?)"
                )))
            }
            Err(e) => return Err(template_err(e)),
        }
        // minijinja writes whole `str`s, so the bytes are UTF-8.
        String::from_utf8(out.bytes)
            .map_err(|e| Error::Tokenizer(format!("chat template: output is not UTF-8: {e}")))
    }
}

/// The render target: refuses to grow past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.full = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `raise_exception(msg)`: how templates reject a conversation they cannot format.
fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(format)`: the current UTC time, formatted like Python's `strftime` for the
/// directives templates use (dates for system prompts).
fn strftime_now(format: String) -> std::result::Result<String, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime_utc(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Proleptic Gregorian (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a calendar whose years start in March, so the leap day is the last day of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn strftime_utc(format: &str, unix_secs: i64) -> std::result::Result<String, minijinja::Error> {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    // 1970-01-01 was a Thursday (index 3 with Monday = 0).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_before_year(year) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        match d {
            'Y' => out.push_str(&year.to_string()),
            'y' => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            'm' => out.push_str(&format!("{month:02}")),
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&format!("{day:>2}")),
            '-' => match chars.next() {
                // glibc's "no padding" flag, used by some templates (%-d).
                Some('d') => out.push_str(&day.to_string()),
                Some('m') => out.push_str(&month.to_string()),
                Some('H') => out.push_str(&h.to_string()),
                Some(other) => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime_now: unsupported directive %-{other}"),
                    ))
                }
                None => out.push_str("%-"),
            },
            'B' => out.push_str(month_name),
            'b' | 'h' => out.push_str(&month_name[..3]),
            'A' => out.push_str(WEEKDAYS[weekday]),
            'a' => out.push_str(&WEEKDAYS[weekday][..3]),
            'j' => out.push_str(&format!("{day_of_year:03}")),
            'H' => out.push_str(&format!("{h:02}")),
            'M' => out.push_str(&format!("{m:02}")),
            'S' => out.push_str(&format!("{s:02}")),
            'F' => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            'T' => out.push_str(&format!("{h:02}:{m:02}:{s:02}")),
            '%' => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other}"),
                ))
            }
        }
    }
    Ok(out)
}

fn days_before_year(year: i64) -> i64 {
    let y = year - 1;
    365 * (year - 1970) + (y / 4 - y / 100 + y / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400)
}

/// `tojson`, as transformers defines it: Python's `json.dumps` with `ensure_ascii=False` (no
/// HTML escaping, `", "` / `": "` separators), accepting `indent`, `separators`, `sort_keys` and
/// `ensure_ascii` keyword arguments.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    }

    fn write(&self, v: &Json, level: usize, out: &mut String) {
        match v {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => self.string(s, out),
            Json::Array(a) if a.is_empty() => out.push_str("[]"),
            Json::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(item, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            Json::Object(o) if o.is_empty() => out.push_str("{}"),
            Json::Object(o) => {
                let mut entries: Vec<(&String, &Json)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(item, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// The chat template shipped in a Hugging Face model folder: `chat_template.jinja`, then
/// `chat_template.json`, then `tokenizer_config.json`'s `chat_template` (a string, or a list of
/// `{name, template}` of which the one named `default` is used). `Ok(None)` when there is none.
pub fn find_chat_template(model_dir: &Path) -> Result<Option<String>> {
    let jinja = model_dir.join("chat_template.jinja");
    match std::fs::read_to_string(&jinja) {
        Ok(s) => return Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", jinja, e)),
    }
    for file in ["chat_template.json", "tokenizer_config.json"] {
        let path = model_dir.join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let json: Json = serde_json::from_slice(&bytes)
            .map_err(|e| Error::config(&path, "", format!("invalid JSON: {e}")))?;
        match json.get("chat_template") {
            None | Some(Json::Null) => continue,
            Some(Json::String(s)) => return Ok(Some(s.clone())),
            Some(Json::Array(list)) => {
                let default = list
                    .iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some("default"));
                return match default
                    .and_then(|t| t.get("template"))
                    .and_then(Json::as_str)
                {
                    Some(s) => Ok(Some(s.to_owned())),
                    None => Err(Error::config(
                        &path,
                        "chat_template",
                        "list of templates has no entry named `default` with a `template` string",
                    )),
                };
            }
            Some(other) => {
                return Err(Error::config(
                    &path,
                    "chat_template",
                    format!("expected a string or a list, found {other}"),
                ))
            }
        }
    }
    Ok(None)
}

/// The chat template of a GGUF file (`tokenizer.chat_template`), if it has one.
pub fn chat_template_from_gguf(meta: &crate::Metadata) -> Option<String> {
    meta.get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime_utc("%Y-%m-%d %H:%M:%S %A %a %B %b %j %y %-d %e %%", t).unwrap(),
            "2024-02-29 13:05:09 Thursday Thu February Feb 060 24 29 29 %"
        );
        assert_eq!(strftime_utc("%d %b %Y", 0).unwrap(), "01 Jan 1970");
        assert_eq!(
            strftime_utc("%F %j", 951_782_400).unwrap(),
            "2000-02-29 060"
        );
        assert_eq!(
            strftime_utc("%F %A", 4_102_444_799).unwrap(),
            "2099-12-31 Thursday"
        );
        assert!(strftime_utc("%Q", 0).is_err());
    }

    #[test]
    fn tojson_matches_python() {
        let t = ChatTemplate::new(
            r#"{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ "<é>\n" | tojson(ensure_ascii=true) }}"#,
            None,
            None,
        )
        .unwrap();
        let env = &t.env;
        let out = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(minijinja::context! { x => vec![Value::from(1), Value::from("a<b"), Value::from(Vec::<i32>::new())] })
            .unwrap();
        assert_eq!(
            out,
            "[1, \"a<b\", []]|[\n  1,\n  \"a<b\",\n  []\n]|\"<\\u00e9>\\n\""
        );
    }
}
