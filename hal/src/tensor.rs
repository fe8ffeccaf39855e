//! Host tensors: a name, a PyTorch-order shape, a [`DType`] and immutable [`HostBytes`].
//! Weights stay in the mapped file until a backend decides to convert them.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::{DType, Error, Result};

/// Immutable bytes shared cheaply between tensors: a window into a memory-mapped file, an owned
/// buffer, or a `'static` slice (the embedded default model).
#[derive(Clone)]
pub struct HostBytes {
    backing: Backing,
    range: Range<usize>,
}

#[derive(Clone)]
enum Backing {
    Mapped(Arc<memmap2::Mmap>),
    Owned(Arc<Vec<u8>>),
    Static(&'static [u8]),
}

impl HostBytes {
    /// Maps `path` read-only. The file must not be modified while mapped (model files are not).
    pub fn map_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        // SAFETY: the mapping is read-only and tandem never writes model files; a concurrent
        // truncation by another process is outside what any mmap-based loader can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
        let len = map.len();
        Ok(HostBytes {
            backing: Backing::Mapped(Arc::new(map)),
            range: 0..len,
        })
    }

    /// Maps bytes `[offset, offset + len)` of an open file read-only (`len` `None`: to the end),
    /// e.g. a model an Android app was handed as a file descriptor into its APK. `name` is what
    /// errors call the file.
    pub fn map_open_file(
        file: &std::fs::File,
        offset: u64,
        len: Option<u64>,
        name: &Path,
    ) -> Result<Self> {
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", name, e))?
            .len();
        let end = match len {
            Some(l) => offset.checked_add(l),
            None => Some(size),
        };
        let Some(end) = end.filter(|&e| e <= size && offset <= e) else {
            let length = len.map_or_else(|| "to the end".to_string(), |l| format!("length {l}"));
            return Err(Error::InvalidInput(format!(
                "{}: range at offset {offset}, {length}, is outside the file ({size} bytes)",
                name.display()
            )));
        };
        // SAFETY: as in `map_file`: read-only, and tandem never writes model files.
        let map = unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io("mmap", name, e))?;
        let (start, end) = (offset as usize, end as usize);
        Ok(HostBytes {
            backing: Backing::Mapped(Arc::new(map)),
            range: start..end,
        })
    }

    /// Wraps an owned buffer.
    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        HostBytes {
            backing: Backing::Owned(Arc::new(v)),
            range: 0..len,
        }
    }

    /// Wraps static bytes (e.g. `include_bytes!`).
    pub fn from_static(s: &'static [u8]) -> Self {
        HostBytes {
            backing: Backing::Static(s),
            range: 0..s.len(),
        }
    }

    /// A sub-window `[start, start + len)` of these bytes, sharing the backing; `None` if out of range.
    pub fn slice(&self, start: usize, len: usize) -> Option<HostBytes> {
        let end = start.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        Some(HostBytes {
            backing: self.backing.clone(),
            range: self.range.start + start..self.range.start + end,
        })
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        let all: &[u8] = match &self.backing {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
            Backing::Static(s) => s,
        };
        &all[self.range.clone()]
    }

    /// True when the bytes live in a memory-mapped file (zero-copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.backing, Backing::Mapped(_))
    }
}

impl std::fmt::Debug for HostBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backing {
            Backing::Mapped(_) => "mapped",
            Backing::Owned(_) => "owned",
            Backing::Static(_) => "static",
        };
        write!(f, "HostBytes({kind}, {} bytes)", self.len())
    }
}

/// A named host tensor. `shape` is in PyTorch order (outermost first); rows are the last dimension
/// and a quantized tensor's last dimension is a whole number of blocks.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: HostBytes,
}

impl Tensor {
    /// Builds a tensor, checking that `data` holds exactly `shape` in `dtype`.
    pub fn new(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<usize>,
        data: HostBytes,
    ) -> Result<Self> {
        let name = name.into();
        let expected = byte_len(dtype, &shape).ok_or_else(|| {
            Error::InvalidInput(format!(
                "tensor `{name}`: shape {shape:?} is not a whole number of {dtype} blocks"
            ))
        })?;
        if data.len() != expected {
            return Err(Error::InvalidInput(format!(
                "tensor `{name}`: {} bytes of data for shape {shape:?} {dtype} (needs {expected})",
                data.len()
            )));
        }
        Ok(Tensor {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// A tensor owning f32 values.
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Result<Self> {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(name, DType::F32, shape, HostBytes::from_vec(bytes))
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Length of the last dimension (1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Number of rows (product of all but the last dimension).
    pub fn n_rows(&self) -> usize {
        self.numel() / self.row_len().max(1)
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.row_len()).unwrap_or(0)
    }

    /// Raw bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data.as_bytes()[r * rb..(r + 1) * rb]
    }

    /// Decodes the whole tensor to f32 (reference path, used for small tensors and tests).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let n = self.row_len();
        let mut out = vec![0.0f32; self.numel()];
        if n == 0 {
            return out;
        }
        for (r, chunk) in out.chunks_exact_mut(n).enumerate() {
            crate::dtype::dequantize_row(self.dtype, self.row(r), chunk);
        }
        out
    }

    /// Checks the shape, naming the tensor and `path` on mismatch.
    pub fn expect_shape(&self, path: &Path, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::Shape {
                path: path.to_path_buf(),
                tensor: self.name.clone(),
                found: self.shape.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }
}

/// Bytes for `shape` in `dtype`, `None` if the last dimension is not whole blocks.
pub fn byte_len(dtype: DType, shape: &[usize]) -> Option<usize> {
    let row = shape.last().copied().unwrap_or(1);
    let rows: usize = shape.iter().rev().skip(1).product();
    dtype.row_bytes(row)?.checked_mul(rows)
}
