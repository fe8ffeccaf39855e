//! CPU compute kernels: weight matrices in f32/f16/bf16/q8_0/q4_0/q4_1/q5_0/q5_1, `y = x · Wᵀ`
//! over the pool, and the small vector helpers of a transformer block (RMSNorm, SwiGLU, softmax,
//! dot, axpy).
//!
//! Every kernel has a scalar reference ([`scalar`]) and SIMD versions chosen once at run time
//! ([`Isa`]): on x86_64 AVX2+FMA+F16C, plus AVX-VNNI (256-bit `vpdpbusd` int8 dot) and AVX-512
//! F/BW/VL/VNNI (512-bit tiles; quantized decode on 256 bits); on aarch64 NEON (+ `dotprod` for the int8 dot). By default each
//! weight dtype uses the best available ISA whose kernels measured faster for it
//! ([`Isa::selected_for`]); `TANDEM_CPU_ISA=scalar` (or the name of another available ISA)
//! forces one ISA for every dtype.
//! Weight bytes may sit at any offset of a mapped file, so no kernel assumes alignment.
//!
//! Quantized weights meet activations quantized once per matmul to Q8_0 blocks, so each block dot
//! is an exact integer dot times both scales. A `_1` block adds a minimum `m` to every weight; its
//! share `m·dx·Σa` needs only the activation block's sum, which is also computed once per matmul
//! (not per weight row).

use std::ops::Range;
use std::sync::{Mutex, OnceLock, PoisonError};

use half::{bf16, f16};
use tandem_hal::dtype::{dequantize_row, quantize_row, quantize_row_q8_0};
use tandem_hal::{BlockQ8_0, DType, Error, HostBytes, Result, Tensor, QK8_0};

use crate::pool::{split_range, ThreadPool};

#[cfg(target_arch = "aarch64")]
mod neon;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

/// Environment variable that forces an instruction set: a full [`Isa::name`] (`scalar`,
/// `avx2+fma+f16c`, `avx2+vnni`, `avx512+vnni`, `neon`, `neon+dotprod`) or its first part (`avx2`
/// picks `avx2+fma+f16c`, `avx512`, `neon`).
pub const ISA_ENV: &str = "TANDEM_CPU_ISA";

/// An instruction set a kernel can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    /// x86_64 with AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// [`Isa::Avx2`] plus AVX-VNNI: the int8 dot uses 256-bit `vpdpbusd`; other kernels as AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2Vnni,
    /// [`Isa::Avx2`] plus AVX-512 F/BW/VL/VNNI: 512-bit FMA tiles and a 512-bit `vpdpbusd` dot.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// aarch64 NEON without the int8 dot-product extension.
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// aarch64 NEON with `sdot` (ARMv8.2 dotprod).
    #[cfg(target_arch = "aarch64")]
    NeonDotprod,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2+fma+f16c",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Vnni => "avx2+vnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512+vnni",
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => "neon",
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => "neon+dotprod",
        }
    }

    /// Every ISA this CPU can run, best last (always starts with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        Isa::detected().to_vec()
    }

    /// [`Isa::available`], detected once.
    fn detected() -> &'static [Isa] {
        static DETECTED: OnceLock<Vec<Isa>> = OnceLock::new();
        DETECTED.get_or_init(|| {
            #[allow(unused_mut)]
            let mut v = vec![Isa::Scalar];
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                v.push(Isa::Avx2);
                if is_x86_feature_detected!("avxvnni") {
                    v.push(Isa::Avx2Vnni);
                }
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    v.push(Isa::Avx512);
                }
            }
            #[cfg(target_arch = "aarch64")]
            if std::arch::is_aarch64_feature_detected!("neon") {
                v.push(Isa::Neon);
                if std::arch::is_aarch64_feature_detected!("dotprod") {
                    v.push(Isa::NeonDotprod);
                }
            }
            v
        })
    }

    /// Whether this ISA's kernels for `dtype` measured faster than those of the ISAs before it
    /// (`benches/matmul.rs` shapes, one thread, decode / 64-token prefill, on a 2-vCPU Xeon with
    /// the Sapphire Rapids feature set; cpuinfo says "Intel(R) Xeon(R) Processor", family 6 model
    /// 167). Where they did not, the default for `dtype` steps down.
    /// - `Avx512`, against AVX2: f32 1.00/1.31, f16 1.04/1.58, bf16 1.03/1.66. Against AVX2+VNNI
    ///   (the best lower ISA for them): q8_0 1.00/1.23, q4_0 1.01/1.18, q5_0 1.16/1.22, q5_1
    ///   1.12/1.09, but q4_1 1.00/0.95 (the `m` vectors make its 4×4 prefill tile spill; a 2×4
    ///   tile measured slower still), so q4_1 steps down where AVX-VNNI is there (against AVX2
    ///   alone, AVX-512 is 1.08/1.12).
    /// - `Avx2Vnni`, against AVX2: q8_0 1.04/1.27, q4_0 1.31/1.26, q4_1 1.07/1.18, q5_0 1.21/1.23,
    ///   q5_1 1.12/1.09; its plain kernels are AVX2's.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn pays_for(self, dtype: DType) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Vnni => dtype.is_quantized(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => dtype != DType::Q4_1 || !Isa::detected().contains(&Isa::Avx2Vnni),
            _ => true,
        }
    }

    /// The best available ISA, or the available one [`ISA_ENV`] names, and whether it was forced.
    /// Detected once.
    fn choice() -> (Isa, bool) {
        static CHOICE: OnceLock<(Isa, bool)> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let available = Isa::detected();
            let best = *available.last().unwrap_or(&Isa::Scalar);
            match std::env::var(ISA_ENV) {
                Ok(want) if !want.is_empty() => {
                    let want = want.to_ascii_lowercase();
                    let found = available
                        .iter()
                        .copied()
                        .find(|i| i.name() == want || i.name().split('+').next() == Some(&want));
                    match found {
                        Some(isa) => (isa, true),
                        None => {
                            tracing::warn!(
                                "{ISA_ENV}={want} is not available on this CPU; using {}",
                                best.name()
                            );
                            (best, false)
                        }
                    }
                }
                _ => (best, false),
            }
        })
    }

    /// The best ISA available (or the one [`ISA_ENV`] forces). Detected once.
    pub fn selected() -> Isa {
        Isa::choice().0
    }

    /// The ISA [`matmul`] uses for `dtype` weights: the one [`ISA_ENV`] forces, else the best
    /// available whose kernels for `dtype` pay off (which may be below [`Isa::selected`]).
    pub fn selected_for(dtype: DType) -> Isa {
        match Isa::choice() {
            (isa, true) => isa,
            (best, false) => Isa::detected()
                .iter()
                .rev()
                .copied()
                .find(|i| i.pays_for(dtype))
                .unwrap_or(best),
        }
    }
}

/// Which instruction set the dispatch chose, e.g. `"avx512+vnni"`, `"neon+dotprod"`, `"scalar"`:
/// the best available (or forced) one. A dtype whose kernels do not gain from it steps down to a
/// lower ISA ([`Isa::selected_for`]).
pub fn isa_name() -> &'static str {
    Isa::selected().name()
}

/// A row-major weight matrix `[rows, cols]` in any [`DType`] but I32 (`cols` a whole number of
/// blocks). The bytes are used where they lie (e.g. inside a mapped file), at any alignment.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: HostBytes,
}

impl Matrix {
    /// Wraps a 2-D tensor (a 1-D tensor is one row), checking its type and byte size.
    pub fn from_tensor(t: &Tensor) -> Result<Matrix> {
        let (rows, cols) = match t.shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            s => {
                return Err(Error::InvalidInput(format!(
                    "tensor `{}`: a weight matrix must be 1-D or 2-D, shape is {s:?}",
                    t.name
                )))
            }
        };
        Matrix::new(&t.name, t.dtype, rows, cols, t.data.clone())
    }

    /// Builds a matrix from raw bytes; `name` is only used in error messages.
    pub fn new(
        name: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        data: HostBytes,
    ) -> Result<Matrix> {
        if dtype == DType::I32 {
            return Err(Error::InvalidInput(format!(
                "tensor `{name}`: {dtype} cannot be used as a weight matrix"
            )));
        }
        let row_bytes = dtype.row_bytes(cols).ok_or_else(|| {
            Error::InvalidInput(format!(
                "tensor `{name}`: {cols} columns is not a whole number of {dtype} blocks of {}",
                dtype.block_len()
            ))
        })?;
        let expected = row_bytes.checked_mul(rows);
        if expected != Some(data.len()) {
            return Err(Error::InvalidInput(format!(
                "tensor `{name}`: {} bytes for a [{rows}, {cols}] {dtype} matrix (needs {})",
                data.len(),
                expected.map_or_else(|| "overflow".to_string(), |e| e.to_string())
            )));
        }
        Ok(Matrix {
            dtype,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).unwrap_or(0)
    }

    /// Raw bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data.as_bytes()[r * rb..(r + 1) * rb]
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `r` dequantized into `out` (`out.len() == cols`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols, "row_to_f32: output length");
        dequantize_row(self.dtype, self.row(r), out);
    }

    /// Re-encodes to `to`: f32/f16/bf16 by round-to-nearest conversion (exact when the value is
    /// representable), quantized types with the hal reference quantizers (dequantizing a quantized
    /// source first). Rows are converted in parallel over `pool`.
    pub fn convert(&self, to: DType, pool: &ThreadPool) -> Result<Matrix> {
        if to == self.dtype {
            return Ok(self.clone());
        }
        let out_rb = to
            .row_bytes(self.cols)
            .filter(|_| to != DType::I32)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "cannot convert a [{}, {}] {} matrix to {to}",
                    self.rows, self.cols, self.dtype
                ))
            })?;
        let mut out = vec![0u8; out_rb * self.rows];
        let nth = pool.n_threads();
        let mut parts = Vec::with_capacity(nth);
        let mut rest = out.as_mut_slice();
        for ith in 0..nth {
            let rows = split_range(self.rows, ith, nth, 1);
            let (mine, tail) = rest.split_at_mut(rows.len() * out_rb);
            parts.push(Mutex::new((rows, mine)));
            rest = tail;
        }
        pool.run(|ith, _| {
            let mut part = parts[ith].lock().unwrap_or_else(PoisonError::into_inner);
            let (rows, bytes) = &mut *part;
            let mut tmp = vec![0.0f32; self.cols];
            for (r, dst) in rows.clone().zip(bytes.chunks_exact_mut(out_rb)) {
                self.row_to_f32(r, &mut tmp);
                encode_row(to, &tmp, dst);
            }
        });
        drop(parts);
        Matrix::new(
            "converted",
            to,
            self.rows,
            self.cols,
            HostBytes::from_vec(out),
        )
    }
}

/// Encodes one f32 row into `dst` (exactly `to.row_bytes(src.len())` bytes).
fn encode_row(to: DType, src: &[f32], dst: &mut [u8]) {
    match to {
        DType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
            }
        }
        DType::BF16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&bf16::from_f32(*v).to_le_bytes());
            }
        }
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => {
            quantize_row(to, src, dst)
        }
        DType::I32 => unreachable!("rejected by Matrix::convert"),
    }
}

/// The activations of a matmul as the weight type wants them: f32 rows, or Q8_0 blocks per token
/// (`nb` per token) with, for weights with a minimum ([`needs_act_sums`]), each block's `d·Σq`
/// (else an empty slice).
#[derive(Clone, Copy)]
enum Act<'a> {
    F32(&'a [f32], usize),
    Q8(&'a [BlockQ8_0], &'a [f32], usize),
}

impl<'a> Act<'a> {
    fn f32_token(self, t: usize) -> &'a [f32] {
        match self {
            Act::F32(x, n) => &x[t * n..(t + 1) * n],
            Act::Q8(..) => unreachable!("f32 activations expected"),
        }
    }

    fn q8_token(self, t: usize) -> (&'a [BlockQ8_0], &'a [f32]) {
        match self {
            Act::Q8(x, s, nb) => {
                let sums = if s.is_empty() {
                    s
                } else {
                    &s[t * nb..(t + 1) * nb]
                };
                (&x[t * nb..(t + 1) * nb], sums)
            }
            Act::F32(..) => unreachable!("q8_0 activations expected"),
        }
    }
}

/// Whether `dtype`'s blocks carry a minimum, whose term needs the activation block sums.
fn needs_act_sums(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_1 | DType::Q5_1)
}

/// `RB` weight rows (starting at `r0`) times `NT` tokens (starting at `t0`) on `isa`.
#[inline]
fn tile<const RB: usize, const NT: usize>(
    isa: Isa,
    w: &Matrix,
    r0: usize,
    act: Act<'_>,
    t0: usize,
) -> [[f32; NT]; RB] {
    let wr: [&[u8]; RB] = std::array::from_fn(|i| w.row(r0 + i));
    if w.dtype.is_quantized() {
        let xs: [(&[BlockQ8_0], &[f32]); NT] = std::array::from_fn(|j| act.q8_token(t0 + j));
        quant_tile(isa, w.dtype, wr, xs.map(|(x, _)| x), xs.map(|(_, s)| s))
    } else {
        let xs: [&[f32]; NT] = std::array::from_fn(|j| act.f32_token(t0 + j));
        plain_tile(isa, w.dtype, wr, xs)
    }
}

#[inline]
fn plain_tile<const RB: usize, const NT: usize>(
    isa: Isa,
    dtype: DType,
    w: [&[u8]; RB],
    x: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    match isa {
        Isa::Scalar => {
            let f = match dtype {
                DType::F32 => scalar::dot_f32_row,
                DType::F16 => scalar::dot_f16_row,
                DType::BF16 => scalar::dot_bf16_row,
                _ => unreachable!("plain dtype expected"),
            };
            std::array::from_fn(|i| std::array::from_fn(|j| f(w[i], x[j])))
        }
        // SAFETY: the AVX2 ISAs are only ever selected after detecting AVX2, FMA and F16C; every
        // weight row holds `x[j].len()` values of `dtype` (checked by `Matrix::new` and `matmul`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => unsafe {
            match dtype {
                DType::F32 => x86::tile_f32(w, x),
                DType::F16 => x86::tile_f16(w, x),
                DType::BF16 => x86::tile_bf16(w, x),
                _ => unreachable!("plain dtype expected"),
            }
        },
        // SAFETY: `Isa::Avx512` is only selected after detecting AVX-512 F/BW/VL/VNNI and AVX2,
        // FMA, F16C; row lengths as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            match dtype {
                DType::F32 => x86_avx512::tile_f32(w, x),
                DType::F16 => x86_avx512::tile_f16(w, x),
                DType::BF16 => x86_avx512::tile_bf16(w, x),
                _ => unreachable!("plain dtype expected"),
            }
        },
        // SAFETY: NEON ISAs are only selected after detecting NEON; row lengths as above.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDotprod => unsafe {
            match dtype {
                DType::F32 => neon::tile_f32(w, x),
                DType::F16 => neon::tile_f16(w, x),
                DType::BF16 => neon::tile_bf16(w, x),
                _ => unreachable!("plain dtype expected"),
            }
        },
    }
}

#[inline]
fn quant_tile<const RB: usize, const NT: usize>(
    isa: Isa,
    dtype: DType,
    w: [&[u8]; RB],
    x: [&[BlockQ8_0]; NT],
    s: [&[f32]; NT],
) -> [[f32; NT]; RB] {
    match isa {
        Isa::Scalar => std::array::from_fn(|i| {
            std::array::from_fn(|j| match dtype {
                DType::Q8_0 => scalar::dot_q8_0_row(w[i], x[j]),
                DType::Q4_0 => scalar::dot_q4_0_row(w[i], x[j]),
                DType::Q4_1 => scalar::dot_q4_1_row(w[i], x[j], s[j]),
                DType::Q5_0 => scalar::dot_q5_0_row(w[i], x[j]),
                DType::Q5_1 => scalar::dot_q5_1_row(w[i], x[j], s[j]),
                _ => unreachable!("quantized dtype expected"),
            })
        }),
        // SAFETY: `Isa::Avx2` is only selected after detecting AVX2, FMA and F16C; every weight
        // row holds `x[j].len()` blocks of `dtype` (checked by `Matrix::new` and `matmul`), and
        // `s[j]` holds as many sums where the type needs them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe {
            match dtype {
                DType::Q8_0 => x86::tile_q8_0(w, x),
                DType::Q4_0 => x86::tile_q4_0(w, x),
                DType::Q4_1 => x86::tile_q4_1(w, x, s),
                DType::Q5_0 => x86::tile_q5_0(w, x),
                DType::Q5_1 => x86::tile_q5_1(w, x, s),
                _ => unreachable!("quantized dtype expected"),
            }
        },
        // SAFETY: `Isa::Avx2Vnni` is only selected after detecting AVX2, FMA, F16C and AVX-VNNI;
        // row lengths as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => unsafe {
            match dtype {
                DType::Q8_0 => x86::tile_q8_0_vnni(w, x),
                DType::Q4_0 => x86::tile_q4_0_vnni(w, x),
                DType::Q4_1 => x86::tile_q4_1_vnni(w, x, s),
                DType::Q5_0 => x86::tile_q5_0_vnni(w, x),
                DType::Q5_1 => x86::tile_q5_1_vnni(w, x, s),
                _ => unreachable!("quantized dtype expected"),
            }
        },
        // SAFETY: `Isa::Avx512` is only selected after detecting AVX-512 F/BW/VL/VNNI and AVX2,
        // FMA, F16C; row lengths as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            match dtype {
                DType::Q8_0 => x86_avx512::tile_q8_0(w, x),
                DType::Q4_0 => x86_avx512::tile_q4_0(w, x),
                DType::Q4_1 => x86_avx512::tile_q4_1(w, x, s),
                DType::Q5_0 => x86_avx512::tile_q5_0(w, x),
                DType::Q5_1 => x86_avx512::tile_q5_1(w, x, s),
                _ => unreachable!("quantized dtype expected"),
            }
        },
        // SAFETY: NEON is detected before `Isa::Neon` is selected; row lengths as above.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => unsafe {
            match dtype {
                DType::Q8_0 => neon::tile_q8_0(w, x),
                DType::Q4_0 => neon::tile_q4_0(w, x),
                DType::Q4_1 => neon::tile_q4_1(w, x, s),
                DType::Q5_0 => neon::tile_q5_0(w, x),
                DType::Q5_1 => neon::tile_q5_1(w, x, s),
                _ => unreachable!("quantized dtype expected"),
            }
        },
        // SAFETY: NEON and dotprod are detected before `Isa::NeonDotprod` is selected.
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDotprod => unsafe {
            match dtype {
                DType::Q8_0 => neon::tile_q8_0_dot(w, x),
                DType::Q4_0 => neon::tile_q4_0_dot(w, x),
                DType::Q4_1 => neon::tile_q4_1_dot(w, x, s),
                DType::Q5_0 => neon::tile_q5_0_dot(w, x),
                DType::Q5_1 => neon::tile_q5_1_dot(w, x, s),
                _ => unreachable!("quantized dtype expected"),
            }
        },
    }
}

/// Rows kept hot in cache while every token group of a prefill passes over them.
const ROW_BLOCK: usize = 16;
/// Tokens sharing one pass over a weight row in prefill.
const TOKEN_TILE: usize = 4;

/// Computes output rows `rows` for all tokens; `out[t]` is token `t`'s slice of those rows.
fn matmul_rows(
    isa: Isa,
    w: &Matrix,
    rows: Range<usize>,
    act: Act<'_>,
    n_tokens: usize,
    out: &mut [&mut [f32]],
) {
    if n_tokens == 1 {
        one_token(isa, w, rows.clone(), rows.start, act, 0, out);
        return;
    }
    match isa {
        // 32 vector registers: a 4×4 tile (16 accumulators) halves the loads per multiply-add.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => prefill_rows::<4, TOKEN_TILE>(isa, w, rows, act, n_tokens, out),
        _ => prefill_rows::<2, TOKEN_TILE>(isa, w, rows, act, n_tokens, out),
    }
}

/// Decode (and a prefill's leftover tokens): four rows per pass, four independent streams.
/// `out[t][r - base]` receives row `r` of token `t`.
fn one_token(
    isa: Isa,
    w: &Matrix,
    rows: Range<usize>,
    base: usize,
    act: Act<'_>,
    t: usize,
    out: &mut [&mut [f32]],
) {
    let mut r = rows.start;
    while r + 4 <= rows.end {
        let v = tile::<4, 1>(isa, w, r, act, t);
        for (i, v) in v.iter().enumerate() {
            out[t][r + i - base] = v[0];
        }
        r += 4;
    }
    for r in r..rows.end {
        out[t][r - base] = tile::<1, 1>(isa, w, r, act, t)[0][0];
    }
}

/// Prefill: blocks of [`ROW_BLOCK`] rows stay in cache while every group of `NT` tokens passes
/// over them in tiles of `RB` rows × `NT` tokens.
fn prefill_rows<const RB: usize, const NT: usize>(
    isa: Isa,
    w: &Matrix,
    rows: Range<usize>,
    act: Act<'_>,
    n_tokens: usize,
    out: &mut [&mut [f32]],
) {
    let base = rows.start;
    let mut rb = rows.start;
    while rb < rows.end {
        let block = rb..(rb + ROW_BLOCK).min(rows.end);
        let mut t = 0;
        while t + NT <= n_tokens {
            let mut r = block.start;
            while r + RB <= block.end {
                let v = tile::<RB, NT>(isa, w, r, act, t);
                for (i, v) in v.iter().enumerate() {
                    for (j, v) in v.iter().enumerate() {
                        out[t + j][r + i - base] = *v;
                    }
                }
                r += RB;
            }
            for r in r..block.end {
                let v = tile::<1, NT>(isa, w, r, act, t);
                for (j, v) in v[0].iter().enumerate() {
                    out[t + j][r - base] = *v;
                }
            }
            t += NT;
        }
        for t in t..n_tokens {
            one_token(isa, w, block.clone(), base, act, t, out);
        }
        rb = block.end;
    }
}

fn check_shapes(what: &str, w: &Matrix, x: &[f32], n_tokens: usize, y: &[f32]) {
    assert_eq!(
        x.len(),
        n_tokens * w.cols,
        "{what}: x must be [n_tokens, cols]"
    );
    assert_eq!(
        y.len(),
        n_tokens * w.rows,
        "{what}: y must be [n_tokens, rows]"
    );
    assert_eq!(w.data.len(), w.rows * w.row_bytes(), "{what}: matrix bytes");
    assert!(w.dtype != DType::I32, "{what}: i32 weights");
}

/// Quantizes each token's activations to Q8_0 with the reference quantizer (so every ISA sees
/// identical blocks and the block dots are exact), and with `sums` each block's `d·Σq` too.
fn quantize_act(
    pool: Option<&ThreadPool>,
    x: &[f32],
    cols: usize,
    n_tokens: usize,
    sums: bool,
) -> (Vec<BlockQ8_0>, Vec<f32>) {
    let nb = cols / QK8_0;
    let mut q = vec![BlockQ8_0::default(); nb * n_tokens];
    let mut s = vec![0.0f32; if sums { nb * n_tokens } else { 0 }];
    let one = |t: usize, b: &mut [BlockQ8_0], s: &mut [f32]| {
        quantize_row_q8_0(&x[t * cols..(t + 1) * cols], b);
        if sums {
            scalar::act_block_sums(b, s);
        }
    };
    // Chunks of the sums per token: `nb` when they are computed, else empty.
    let snb = if sums { nb } else { 0 };
    match pool {
        Some(pool) if n_tokens >= 2 * pool.n_threads() && pool.n_threads() > 1 => {
            let nth = pool.n_threads();
            let mut parts = Vec::with_capacity(nth);
            let (mut rest, mut srest) = (q.as_mut_slice(), s.as_mut_slice());
            for ith in 0..nth {
                let toks = split_range(n_tokens, ith, nth, 1);
                let (mine, tail) = rest.split_at_mut(toks.len() * nb);
                let (smine, stail) = srest.split_at_mut(toks.len() * snb);
                parts.push(Mutex::new((toks, mine, smine)));
                (rest, srest) = (tail, stail);
            }
            pool.run(|ith, _| {
                let mut part = parts[ith].lock().unwrap_or_else(PoisonError::into_inner);
                let (toks, blocks, sums) = &mut *part;
                for (i, t) in toks.clone().enumerate() {
                    let b = &mut blocks[i * nb..(i + 1) * nb];
                    one(t, b, &mut sums[i * snb..(i + 1) * snb]);
                }
            });
        }
        _ => {
            for t in 0..n_tokens {
                one(
                    t,
                    &mut q[t * nb..(t + 1) * nb],
                    &mut s[t * snb..(t + 1) * snb],
                );
            }
        }
    }
    (q, s)
}

/// `y[t*rows + r] = sum_k W[r,k] * x[t*cols + k]` for `t in 0..n_tokens` (`y = x · Wᵀ`), split
/// across `pool` by output rows, on the [`Isa::selected_for`] instruction set. For quantized
/// weights `x` is first quantized to Q8_0 per token and each block dot is an exact integer dot.
pub fn matmul(pool: &ThreadPool, w: &Matrix, x: &[f32], n_tokens: usize, y: &mut [f32]) {
    matmul_with_isa(Isa::selected_for(w.dtype), pool, w, x, n_tokens, y)
}

/// [`matmul`] on a given instruction set (which must be in [`Isa::available`]); for tests and
/// benchmarks comparing ISAs.
pub fn matmul_with_isa(
    isa: Isa,
    pool: &ThreadPool,
    w: &Matrix,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
) {
    check_shapes("matmul", w, x, n_tokens, y);
    assert!(
        Isa::available().contains(&isa),
        "matmul: {} is not available on this CPU",
        isa.name()
    );
    if n_tokens == 0 || w.rows == 0 {
        return;
    }
    let q;
    let act = if w.dtype.is_quantized() {
        q = quantize_act(Some(pool), x, w.cols, n_tokens, needs_act_sums(w.dtype));
        Act::Q8(&q.0, &q.1, w.cols / QK8_0)
    } else {
        Act::F32(x, w.cols)
    };
    let nth = pool.n_threads();
    // Each thread owns a contiguous range of rows; its outputs are one slice per token.
    let ranges: Vec<Range<usize>> = (0..nth)
        .map(|ith| split_range(w.rows, ith, nth, 4))
        .collect();
    let mut parts: Vec<Vec<&mut [f32]>> = (0..nth).map(|_| Vec::with_capacity(n_tokens)).collect();
    for token_y in y.chunks_exact_mut(w.rows) {
        let mut rest = token_y;
        for (ith, r) in ranges.iter().enumerate() {
            let (mine, tail) = rest.split_at_mut(r.len());
            parts[ith].push(mine);
            rest = tail;
        }
    }
    let parts: Vec<Mutex<Vec<&mut [f32]>>> = parts.into_iter().map(Mutex::new).collect();
    pool.run(|ith, _| {
        let rows = ranges[ith].clone();
        if rows.is_empty() {
            return;
        }
        let mut out = parts[ith].lock().unwrap_or_else(PoisonError::into_inner);
        matmul_rows(isa, w, rows, act, n_tokens, &mut out);
    });
}

/// Single-threaded scalar reference of [`matmul`]: one sequential f32 sum per output (for the
/// quantized types, per-block exact i32 dots times both scales plus `m` times the activation block
/// sum for the `_1` types, `x` quantized by the hal reference).
pub fn matmul_ref(w: &Matrix, x: &[f32], n_tokens: usize, y: &mut [f32]) {
    check_shapes("matmul_ref", w, x, n_tokens, y);
    if n_tokens == 0 || w.rows == 0 {
        return;
    }
    let q;
    let act = if w.dtype.is_quantized() {
        q = quantize_act(None, x, w.cols, n_tokens, needs_act_sums(w.dtype));
        Act::Q8(&q.0, &q.1, w.cols / QK8_0)
    } else {
        Act::F32(x, w.cols)
    };
    for t in 0..n_tokens {
        for r in 0..w.rows {
            y[t * w.rows + r] = tile::<1, 1>(Isa::Scalar, w, r, act, t)[0][0];
        }
    }
}

/// `out = x / sqrt(mean(x²) + eps) * weight` for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert!(
        weight.len() == x.len() && out.len() == x.len(),
        "rms_norm: lengths differ"
    );
    let scale = scalar::rms_scale(dot(x, x), x.len(), eps);
    for ((o, &xv), &wv) in out.iter_mut().zip(x).zip(weight) {
        *o = xv * scale * wv;
    }
}

/// `gate[i] = silu(gate[i]) * up[i]` with `silu(v) = v / (1 + e^-v)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: lengths differ");
    scalar::silu_mul(gate, up)
}

/// In-place softmax, max-subtracted. A row that is entirely `-inf` (fully masked) becomes uniform.
pub fn softmax(x: &mut [f32]) {
    scalar::softmax(x)
}

/// `sum_i a[i] * b[i]`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    match Isa::selected() {
        Isa::Scalar => scalar::dot(a, b),
        // SAFETY: AVX2+FMA were detected before any x86 SIMD ISA was selected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 => unsafe { x86::dot(a, b) },
        // SAFETY: NEON was detected before a NEON ISA was selected.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDotprod => unsafe { neon::dot(a, b) },
    }
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    match Isa::selected() {
        Isa::Scalar => scalar::axpy(alpha, x, y),
        // SAFETY: AVX2+FMA were detected before any x86 SIMD ISA was selected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 => unsafe { x86::axpy(alpha, x, y) },
        // SAFETY: NEON was detected before a NEON ISA was selected.
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDotprod => unsafe { neon::axpy(alpha, x, y) },
    }
}

/// `y += x`.
pub fn add(y: &mut [f32], x: &[f32]) {
    assert_eq!(x.len(), y.len(), "add: lengths differ");
    // A plain loop: the compiler vectorizes it with the baseline ISA and it is bandwidth-bound.
    scalar::add(y, x)
}
