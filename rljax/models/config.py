"""Model configuration for the decoder family (Llama 3, Qwen2, Qwen3), presets and HF config mapping.

One frozen, hashable dataclass describes every supported architecture; the three families differ only
in a few switches (`qkv_bias` for Qwen2, `qk_norm` for Qwen3, llama3 RoPE scaling for Llama 3.1).
`from_hf_config` / `to_hf_config` translate to and from the `config.json` of
`LlamaForCausalLM`, `Qwen2ForCausalLM` and `Qwen3ForCausalLM` (both the transformers-5
`rope_parameters` layout and the older `rope_theta` / `rope_scaling` layout are read).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

FAMILIES = ("llama", "qwen2", "qwen3")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
_FLOAT_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 RoPE frequency scaling (the `rope_type: "llama3"` entry of an HF config).

    Frequencies whose wavelength exceeds `original_max_position_embeddings / low_freq_factor`
    are divided by `factor`; those shorter than `original_max_position_embeddings / high_freq_factor`
    are kept; the band in between is interpolated linearly in `original / wavelength`.
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"rope_scaling.factor must be > 0, got {self.factor}")
        if not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError(
                "rope_scaling needs 0 < low_freq_factor < high_freq_factor, got "
                f"low_freq_factor={self.low_freq_factor}, high_freq_factor={self.high_freq_factor}"
            )
        if self.original_max_position_embeddings <= 0:
            raise ValueError(
                "rope_scaling.original_max_position_embeddings must be > 0, got "
                f"{self.original_max_position_embeddings}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RopeScaling:
        """Builds the scaling from an HF-style dict (extra keys such as `rope_type` are ignored)."""
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        if missing:
            raise ValueError(f"rope_scaling {dict(values)} is missing keys {missing}")
        return cls(
            factor=float(values["factor"]),
            low_freq_factor=float(values["low_freq_factor"]),
            high_freq_factor=float(values["high_freq_factor"]),
            original_max_position_embeddings=int(values["original_max_position_embeddings"]),
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and numerics of one decoder.

    `rope_scaling` accepts None, a `RopeScaling` or the equivalent dict (converted on construction).
    `dtype` is the compute dtype, `param_dtype` the storage dtype of the parameters; both are stored
    as dtype names ("float32", "bfloat16", "float16"). `remat` recomputes each layer in the backward
    pass; `scan_layers` stores the layers stacked on a leading "layers" axis and runs them with a scan.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    family: str = "llama"
    rope_theta: float = 10_000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 4096
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    scan_layers: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")
        if self.rms_norm_eps <= 0:
            raise ValueError(f"rms_norm_eps must be > 0, got {self.rms_norm_eps}")
        if isinstance(self.rope_scaling, Mapping):
            object.__setattr__(self, "rope_scaling", RopeScaling.from_mapping(self.rope_scaling))
        elif self.rope_scaling is not None and not isinstance(self.rope_scaling, RopeScaling):
            raise ValueError(
                f"rope_scaling must be None, a dict or RopeScaling, got {self.rope_scaling!r}"
            )
        for name in ("dtype", "param_dtype"):
            object.__setattr__(self, name, _dtype_name(name, getattr(self, name)))

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    def replace(self, **overrides: Any) -> ModelConfig:
        """Returns a copy with the given fields changed (validated again)."""
        return dataclasses.replace(self, **overrides)

    @classmethod
    def tiny(cls, vocab_size: int = 512, **overrides: Any) -> ModelConfig:
        """A 4-layer, 128-wide Qwen3-style model for tests and CPU experiments."""
        return cls(
            vocab_size=vocab_size,
            hidden_size=128,
            intermediate_size=384,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            head_dim=32,
            family="qwen3",
            rope_theta=10_000.0,
            rms_norm_eps=1e-6,
            tie_embeddings=True,
            qk_norm=True,
            max_position_embeddings=2048,
        ).replace(**overrides)

    @classmethod
    def qwen3_0_6b(cls, **overrides: Any) -> ModelConfig:
        """Qwen3-0.6B (hf.co/Qwen/Qwen3-0.6B): 0.6B parameters, 0.44B non-embedding."""
        return cls(
            vocab_size=151_936,
            hidden_size=1024,
            intermediate_size=3072,
            num_layers=28,
            num_heads=16,
            num_kv_heads=8,
            head_dim=128,
            family="qwen3",
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_embeddings=True,
            qk_norm=True,
            max_position_embeddings=40_960,
        ).replace(**overrides)

    @classmethod
    def qwen3_8b(cls, **overrides: Any) -> ModelConfig:
        """Qwen3-8B (hf.co/Qwen/Qwen3-8B): 8.2B parameters, 6.95B non-embedding."""
        return cls(
            vocab_size=151_936,
            hidden_size=4096,
            intermediate_size=12_288,
            num_layers=36,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            family="qwen3",
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_embeddings=False,
            qk_norm=True,
            max_position_embeddings=40_960,
        ).replace(**overrides)

    @classmethod
    def llama3_1_8b(cls, **overrides: Any) -> ModelConfig:
        """Llama-3.1-8B (hf.co/meta-llama/Llama-3.1-8B): 8.03B parameters, llama3 RoPE scaling."""
        return cls(
            vocab_size=128_256,
            hidden_size=4096,
            intermediate_size=14_336,
            num_layers=32,
            num_heads=32,
            num_kv_heads=8,
            head_dim=128,
            family="llama",
            rope_theta=500_000.0,
            rope_scaling=RopeScaling(
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=8192,
            ),
            rms_norm_eps=1e-5,
            tie_embeddings=False,
            max_position_embeddings=131_072,
        ).replace(**overrides)

    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any], **overrides: Any) -> ModelConfig:
        """Reads an HF `config.json` dict of a Llama, Qwen2 or Qwen3 causal LM.

        Args:
          hf: the parsed `config.json`.
          **overrides: ModelConfig fields to set on top (e.g. dtype, scan_layers).

        Returns:
          The ModelConfig. Raises ValueError for an unsupported model type or feature (non-SiLU
          activation, sliding-window attention, output-projection or MLP biases, a RoPE type other
          than default/llama3, after resolving `rope_scaling` against `rope_parameters` as
          transformers does).
        """
        family = hf.get("model_type")
        if family not in FAMILIES:
            raise ValueError(f"model_type must be one of {FAMILIES}, got {family!r}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act must be 'silu', got {hf['hidden_act']!r}")
        if hf.get("use_sliding_window"):
            raise ValueError("use_sliding_window=True is not supported (full attention only)")
        if family in ("llama", "qwen3") and hf.get("attention_bias"):
            raise ValueError(
                f"attention_bias=True is not supported for {family} (it biases o_proj too)"
            )
        if hf.get("mlp_bias"):
            raise ValueError("mlp_bias=True is not supported")
        rope_theta, rope_scaling = _read_rope(hf)
        num_heads = int(hf["num_attention_heads"])
        fields = dict(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
            head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // num_heads),
            family=family,
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=family == "qwen2",
            qk_norm=family == "qwen3",
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
        )
        fields.update(overrides)
        return cls(**fields)

    def to_hf_config(self) -> dict[str, Any]:
        """Writes the HF `config.json` dict (transformers-5 layout) of this model's family.

        Returns:
          A JSON-serialisable dict. Raises ValueError when the family cannot express this config
          (qkv_bias is Qwen2-only and mandatory there, qk_norm is Qwen3-only and mandatory there).
        """
        if self.qkv_bias != (self.family == "qwen2"):
            raise ValueError(
                f"family {self.family!r} cannot be exported with qkv_bias={self.qkv_bias}"
            )
        if self.qk_norm != (self.family == "qwen3"):
            raise ValueError(
                f"family {self.family!r} cannot be exported with qk_norm={self.qk_norm}"
            )
        rope: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            rope = {
                "rope_type": "llama3",
                "rope_theta": self.rope_theta,
                **dataclasses.asdict(self.rope_scaling),
            }
        hf: dict[str, Any] = {
            "architectures": [_ARCHITECTURES[self.family]],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "tie_word_embeddings": self.tie_embeddings,
            "dtype": self.param_dtype,
        }
        if self.family in ("llama", "qwen3"):
            hf["attention_bias"] = False
        if self.family == "llama":
            hf["mlp_bias"] = False
        else:
            hf["use_sliding_window"] = False
        return hf


def _dtype_name(field: str, value: Any) -> str:
    try:
        name = jnp.dtype(value).name
    except TypeError as error:
        raise ValueError(f"{field} must be one of {_FLOAT_DTYPES}, got {value!r}") from error
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"{field} must be one of {_FLOAT_DTYPES}, got {value!r}")
    return name


SUPPORTED_ROPE_TYPES = ("default", "llama3")
DEFAULT_ROPE_THETA = 10_000.0  # transformers' PreTrainedConfig.default_theta (Llama, Qwen2, Qwen3)


def _read_rope(hf: Mapping[str, Any]) -> tuple[float, RopeScaling | None]:
    """Returns (rope_theta, rope_scaling) from an HF config, resolved as transformers 5 does.

    A non-empty legacy `rope_scaling` replaces `rope_parameters` entirely (transformers'
    `convert_rope_params_to_dict`); theta is the chosen dict's `rope_theta`, else the top-level
    `rope_theta`, else 10000; the type is its `rope_type`, else `type`, else "default".
    Types other than default and llama3 (linear, dynamic, yarn, longrope, ...) raise ValueError
    naming the key they came from, rather than loading with the wrong frequencies.
    """
    legacy = hf.get("rope_scaling")
    key, rope = (
        ("rope_scaling", legacy) if legacy else ("rope_parameters", hf.get("rope_parameters"))
    )
    rope = {} if rope is None else rope
    if not isinstance(rope, Mapping):
        raise ValueError(f"{key} must be a JSON object, got {rope!r}")
    theta = float(rope.get("rope_theta", hf.get("rope_theta", DEFAULT_ROPE_THETA)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type == "llama3":
        return theta, RopeScaling.from_mapping(rope)
    ignored = " (it takes precedence over rope_parameters)" if key == "rope_scaling" else ""
    raise ValueError(
        f"{key}.rope_type={rope_type!r}{ignored} is not supported: rljax implements RoPE types "
        f"{list(SUPPORTED_ROPE_TYPES)}"
    )


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "tiny": ModelConfig.tiny,
    "qwen3_0_6b": ModelConfig.qwen3_0_6b,
    "qwen3_8b": ModelConfig.qwen3_8b,
    "llama3_1_8b": ModelConfig.llama3_1_8b,
}
