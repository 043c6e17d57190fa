"""Safe structural readers for model artifacts: parse headers and opcodes, never execute anything.

Every reader raises :class:`bastion.errors.UnusableInput` naming the file and the first defect.
"""

from bastion.formats.artifact import Artifact, ArtifactFile, open_artifact
from bastion.formats.detect import detect_format, sniff
from bastion.formats.gguf import GGUFInfo, TensorInfo, read_gguf
from bastion.formats.hf_config import (
    HFConfig,
    TokenizerConfig,
    read_hf_config,
    read_tokenizer_added_tokens,
    read_tokenizer_config,
)
from bastion.formats.numpy_npy import NpyHeader, read_npy_header
from bastion.formats.pickle_ops import Anomaly, GlobalRef, PickleAnalysis, analyse_pickle
from bastion.formats.safetensors import SafetensorsInfo, read_safetensors
from bastion.formats.strict_json import read_json
from bastion.formats.torch_zip import TorchArchive, read_torch_zip

__all__ = [
    "Artifact",
    "ArtifactFile",
    "Anomaly",
    "GGUFInfo",
    "GlobalRef",
    "HFConfig",
    "NpyHeader",
    "PickleAnalysis",
    "SafetensorsInfo",
    "TensorInfo",
    "TokenizerConfig",
    "TorchArchive",
    "analyse_pickle",
    "detect_format",
    "open_artifact",
    "read_gguf",
    "read_hf_config",
    "read_json",
    "read_npy_header",
    "read_safetensors",
    "read_tokenizer_added_tokens",
    "read_tokenizer_config",
    "read_torch_zip",
    "sniff",
]
