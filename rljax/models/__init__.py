"""NNX decoder family (Llama 3, Qwen2, Qwen3): configs and presets, KV cache, HF safetensors import/export."""

from rljax.models.cache import KVCache, init_cache
from rljax.models.config import PRESETS, ModelConfig, RopeScaling
from rljax.models.decoder import Decoder
from rljax.models.hf import load_hf, save_hf

__all__ = [
    "Decoder",
    "KVCache",
    "ModelConfig",
    "PRESETS",
    "RopeScaling",
    "init_cache",
    "load_hf",
    "save_hf",
]
