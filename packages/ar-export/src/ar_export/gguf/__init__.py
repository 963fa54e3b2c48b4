"""GGUF export (llama.cpp): `write_gguf(model, tokenizer, path, mix="q4_k_m", quantized=None, imatrix=None)`;
`convert_folder(folder, path, mix)` writes a saved checkpoint folder without transformers (also the `ar-gguf`
command and `python -m ar_export.gguf`); `read_tensors(path)` reads any GGUF file back for `dequantized_state_dict`.

Needs the `gguf` package (`pip install 'ar-export[gguf]'`); importing this module without it raises ImportError,
which the FORMATS registry turns into that install hint.
"""

import gguf  # noqa: F401  (fail early with ImportError when the extra is not installed)

from .folder import FolderModel, convert_folder, read_folder
from .format import FORMAT, GGUFFormat
from .mix import check_mix, tensor_type, use_more_bits, wanted_type
from .reader import read_tensors
from .writer import (GGUFTensor, dequantized_state_dict, export_tensors, layer_schemes, layer_types, quantize_rows,
                     record_type, rule_schemes, write_gguf, write_tensors)

__all__ = ["FORMAT", "FolderModel", "GGUFFormat", "GGUFTensor", "check_mix", "convert_folder",
           "dequantized_state_dict", "export_tensors", "layer_schemes", "layer_types", "quantize_rows", "read_folder",
           "read_tensors", "record_type", "rule_schemes", "tensor_type", "use_more_bits", "wanted_type", "write_gguf",
           "write_tensors"]
