#!/usr/bin/env python3
"""Write a Q4_0 GGUF from an F32 GGUF with the `gguf` Python package.

All metadata is copied from the input (so the tokenizer, hyper-parameters and llama's permuted
q/k rows are exactly the converter's), `general.file_type` becomes MOSTLY_Q4_0, and tensors are
stored as:
  * 1-D tensors (norms, biases, rope_freqs):                       F32
  * output.weight (like llama.cpp, the output matrix gets more bits): Q8_0
  * other 2-D tensors whose row length is a multiple of 32:          Q4_0
  * anything else:                                                   F32
so a reader has to honour each tensor's own type.

usage: quantize_gguf.py IN_F32.gguf OUT_Q4_0.gguf
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
from gguf.quants import quantize


def main():
    src, dst = sys.argv[1], sys.argv[2]
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(dst, arch)

    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            writer.add_uint32(name, int(LlamaFileType.MOSTLY_Q4_0))
            continue
        vtype = GGUFValueType(field.types[0])
        sub = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)

    for t in reader.tensors:
        if t.tensor_type != GGMLQuantizationType.F32:
            raise SystemExit(f"{src}: tensor {t.name} is {t.tensor_type.name}; expected an all-F32 input")
        data = np.asarray(t.data, dtype=np.float32)
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            qtype = GGMLQuantizationType.Q8_0 if t.name == "output.weight" else GGMLQuantizationType.Q4_0
            writer.add_tensor(t.name, quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
