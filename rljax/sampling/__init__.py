"""KV-cache sampling: strategies, jitted prefill/decode and the multi-turn `DecodeSession`."""

from rljax.sampling.sampler import DecodeResult, bucket_size, decode, extend, next_token_logits
from rljax.sampling.session import DecodeSession, Generation
from rljax.sampling.strategies import Greedy, Sample, Strategy, Temperature

__all__ = [
    "DecodeResult",
    "DecodeSession",
    "Generation",
    "Greedy",
    "Sample",
    "Strategy",
    "Temperature",
    "bucket_size",
    "decode",
    "extend",
    "next_token_logits",
]
