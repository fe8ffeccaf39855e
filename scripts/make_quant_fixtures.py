#!/usr/bin/env python3
"""Write tests/fixtures/quants/: Q4_1, Q5_0 and Q5_1 blocks made by the `gguf` Python package.

tandem's quantizers, dequantizers and kernels for these types are checked against these bytes
(backends/cpu/tests/quant_fixtures.rs), so the reference is code tandem did not write.

Files (all little-endian, row-major, ROWS x COLS):
  input.f32            the f32 matrix that was quantized
  <type>.bin           gguf.quants.quantize(input, <type>): ROWS * COLS / 32 blocks
  <type>.dequant.f32   gguf.quants.dequantize(<type>.bin, <type>)
for <type> in q4_1, q5_0, q5_1.

usage: make_quant_fixtures.py [OUT_DIR]   (default: tests/fixtures/quants next to this script)
"""

import pathlib
import sys

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

ROWS, COLS = 8, 256
SEED = 20240917
TYPES = {
    "q4_1": GGMLQuantizationType.Q4_1,
    "q5_0": GGMLQuantizationType.Q5_0,
    "q5_1": GGMLQuantizationType.Q5_1,
}


def matrix() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    x = np.empty((ROWS, COLS), dtype=np.float32)
    # Rows 0-2: normal values, a different scale per 32-value block (so every block has its own
    # d and m), row 2 all positive (a minimum above zero).
    scales = rng.uniform(0.05, 3.0, size=(3, COLS // 32)).repeat(32, axis=1)
    x[0:3] = rng.standard_normal((3, COLS)) * scales
    x[2] = np.abs(x[2]) + 0.25
    # Block 0 of row 0: the largest magnitude twice, with opposite signs (Q5_0 takes the first).
    x[0, 0], x[0, 5] = -20.0, 20.0
    # Row 3: half-integers from 0 to 15 with both ends in every block, so (x - min) / d lands
    # exactly on k + 0.5 and the rounding ties are exercised.
    x[3] = rng.integers(0, 31, COLS) / 2.0
    x[3, 0::32], x[3, 1::32] = 0.0, 15.0
    # Row 4: all values equal (d = 0).
    x[4] = 0.7
    # Row 5: zeros: four whole blocks, then every other value of random blocks.
    x[5] = rng.standard_normal(COLS)
    x[5, : COLS // 2] = 0.0
    x[5, 1::2] = 0.0
    # Row 6: large magnitudes (the scales and minimums stay within f16).
    x[6] = rng.uniform(-4.0e4, 4.0e4, COLS)
    # Row 7: tiny magnitudes (the scales are f16 subnormals).
    x[7] = rng.standard_normal(COLS) * 1.0e-5
    return x


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "tests/fixtures/quants"
    out.mkdir(parents=True, exist_ok=True)
    x = matrix()
    (out / "input.f32").write_bytes(x.astype("<f4").tobytes())
    for name, qtype in TYPES.items():
        q = quantize(x, qtype)
        assert q.dtype == np.uint8 and q.shape[0] == ROWS
        back = dequantize(q, qtype).astype(np.float32)
        assert back.shape == (ROWS, COLS)
        (out / f"{name}.bin").write_bytes(q.tobytes())
        (out / f"{name}.dequant.f32").write_bytes(back.astype("<f4").tobytes())
        print(f"{name}: {q.size} bytes, max |x - dequant| per row:",
              np.abs(x - back).max(axis=1))


if __name__ == "__main__":
    main()
