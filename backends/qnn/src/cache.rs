//! The context-binary cache: finalized contexts saved under a key of everything that shapes
//! them (model content, spec, chunk sizes, context length, QNN build, target, options, lowering
//! version), so the next start restores instead of finalizing.
//!
//! File format (little-endian): magic `TNDMQNNC`, format version u32, description length u32,
//! key hash u64, payload length u64, payload hash u64, the key description (UTF-8, for humans and
//! for a second equality check), then the QNN context binary. A file whose header, key or payload
//! hash does not match is reported as rejected (the caller rebuilds and warns); files are written
//! to a temporary name and renamed, so a reader never sees a partial file and two writers leave
//! one complete file.

use std::io::Write;
use std::path::{Path, PathBuf};

use tandem_graphs::{ModelSpec, ModelWeights};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"TNDMQNNC";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8;

/// Environment variable overriding the default cache folder.
pub const ENV_CACHE_DIR: &str = "TANDEM_QNN_CACHE_DIR";

/// A 64-bit non-cryptographic hash over 8-byte words (fast enough to hash a model's weights
/// at load: a few GB/s). Stable across platforms and Rust versions, unlike `DefaultHasher`.
#[derive(Clone, Debug)]
pub struct Hash64 {
    state: u64,
    len: u64,
}

impl Default for Hash64 {
    fn default() -> Self {
        Hash64 {
            state: 0x243F_6A88_85A3_08D3,
            len: 0,
        }
    }
}

impl Hash64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(&mut self, w: u64) {
        let x = (self.state ^ w).wrapping_mul(Self::K);
        self.state = x ^ (x >> 31) ^ self.state.rotate_left(23);
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(buf) ^ 0xFF);
        }
    }

    pub fn finish(&self) -> u64 {
        let mut h = self.clone();
        h.mix(self.len);
        let mut x = h.state;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x
    }

    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Hash64::default();
        h.update(bytes);
        h.finish()
    }
}

/// Hash of every tensor's name, dtype, shape and bytes.
pub fn weights_hash(weights: &ModelWeights) -> u64 {
    let mut h = Hash64::default();
    for t in weights.tensors() {
        h.update(t.name.as_bytes());
        h.update(format!("{:?}{:?}", t.dtype, t.shape).as_bytes());
        h.update(t.data.as_bytes());
    }
    h.finish()
}

/// What a cached context depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    pub hash: u64,
    /// Human-readable form of everything hashed except the weights' bytes.
    pub description: String,
}

/// Everything besides the model that shapes a context binary.
#[derive(Clone, Debug)]
pub struct KeyParts<'a> {
    pub spec: &'a ModelSpec,
    pub weights_hash: u64,
    pub chunks: &'a [usize],
    pub ctx: usize,
    pub build_id: &'a str,
    pub core_api: &'a str,
    /// Target SoC model / HTP arch (None = the library's default).
    pub soc_model: Option<u32>,
    pub htp_arch: Option<u32>,
    /// Graph options (precision, VTCM, optimization level) as text.
    pub options: String,
}

impl CacheKey {
    pub fn new(p: &KeyParts<'_>) -> CacheKey {
        let description = format!(
            "tandem-qnn lowering v{} | weights {:016x} | spec {:?} | chunks {:?} | ctx {} | qnn build {} core {} | soc {:?} arch {:?} | options {}",
            crate::lower::LOWERING_VERSION,
            p.weights_hash,
            p.spec,
            p.chunks,
            p.ctx,
            p.build_id,
            p.core_api,
            p.soc_model,
            p.htp_arch,
            p.options,
        );
        CacheKey {
            hash: Hash64::of(description.as_bytes()),
            description,
        }
    }

    /// The file for this key in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{:016x}.qnnctx", self.hash))
    }
}

/// `$TANDEM_QNN_CACHE_DIR`, else `$XDG_CACHE_HOME/tandem/qnn`, else `~/.cache/tandem/qnn`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env(ENV_CACHE_DIR)
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("tandem").join("qnn")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("tandem").join("qnn")))
}

/// Writes `payload` under `key` at `path` atomically (temporary file in the same folder, then
/// rename over the target).
pub fn store(path: &Path, key: &CacheKey, payload: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        op: "create cache folder",
        path: dir.to_path_buf(),
        source,
    })?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = path.with_extension(format!(
        "tmp.{}.{:?}.{nanos}",
        std::process::id(),
        std::thread::current().id()
    ));
    let io = |op, source| Error::Io {
        op,
        path: tmp.clone(),
        source,
    };
    let desc = key.description.as_bytes();
    let mut header = Vec::with_capacity(HEADER_LEN + desc.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    header.extend_from_slice(&key.hash.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&Hash64::of(payload).to_le_bytes());
    header.extend_from_slice(desc);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&header).map_err(|e| io("write", e))?;
        f.write_all(payload).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            op: "rename cache file into",
            path: path.to_path_buf(),
            source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Outcome of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    /// No file for this key.
    Missing,
    /// A file exists but cannot be used (truncated, corrupt, other key); the reason.
    Rejected(String),
    /// The context binary.
    Hit(Vec<u8>),
}

/// Reads and checks the cache file for `key`.
pub fn load(path: &Path, key: &CacheKey) -> Lookup {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Missing,
        Err(e) => return Lookup::Rejected(format!("read {}: {e}", path.display())),
    };
    match parse(&bytes, key) {
        Ok(range) => Lookup::Hit(bytes[range].to_vec()),
        Err(why) => Lookup::Rejected(format!("{}: {why}", path.display())),
    }
}

/// The key a cache file was written under (header and description only), e.g. to list a cache
/// folder; `None` when the file is unreadable or not a cache file.
pub fn stored_key(path: &Path) -> Option<CacheKey> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let desc_len = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let hash = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    let desc = bytes.get(HEADER_LEN..HEADER_LEN + desc_len)?;
    Some(CacheKey {
        hash,
        description: String::from_utf8(desc.to_vec()).ok()?,
    })
}

fn parse(bytes: &[u8], key: &CacheKey) -> std::result::Result<std::ops::Range<usize>, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a tandem QNN cache file (bad magic)".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let desc_len = u32_at(12) as usize;
    let (hash, len, payload_hash) = (u64_at(16), u64_at(24) as usize, u64_at(32));
    if hash != key.hash {
        return Err(format!("key {hash:016x}, wanted {:016x}", key.hash));
    }
    let start = HEADER_LEN + desc_len;
    if bytes.len() != start.saturating_add(len) {
        return Err(format!(
            "truncated or padded: {} bytes, header promises {}",
            bytes.len(),
            start.saturating_add(len)
        ));
    }
    if &bytes[HEADER_LEN..start] != key.description.as_bytes() {
        return Err("key description differs (hash collision or edited file)".into());
    }
    if Hash64::of(&bytes[start..]) != payload_hash {
        return Err("payload hash mismatch (corrupt)".into());
    }
    Ok(start..bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CacheKey {
        CacheKey {
            hash: Hash64::of(s.as_bytes()),
            description: s.into(),
        }
    }

    #[test]
    fn roundtrip_and_rejections() {
        let dir = std::env::temp_dir().join(format!("tandem-qnn-cache-{}", std::process::id()));
        let k = key("a");
        let path = k.path_in(&dir);
        assert!(matches!(load(&path, &k), Lookup::Missing));
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        store(&path, &k, &payload).unwrap();
        match load(&path, &k) {
            Lookup::Hit(p) => assert_eq!(p, payload),
            other => panic!("{other:?}"),
        }
        assert!(matches!(load(&path, &key("b")), Lookup::Rejected(_)));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(load(&path, &k), Lookup::Rejected(w) if w.contains("truncated")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hash_is_sensitive_to_every_byte() {
        let a = vec![0u8; 33];
        let mut b = a.clone();
        b[32] = 1;
        assert_ne!(Hash64::of(&a), Hash64::of(&b));
        assert_ne!(Hash64::of(&a[..32]), Hash64::of(&a));
    }
}
