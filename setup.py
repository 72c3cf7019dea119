"""rljax: a JAX-native library for reinforcement learning of large language models."""

from setuptools import find_packages, setup

CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "chex==0.1.92",
    "numpy",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "grain==0.2.18",
    "array-record==0.8.6",
    "tensorflow-datasets==4.9.10",
    "etils[epath,epy]",
    "matplotlib",
    "tqdm",
]
TEST = [
    "pytest",
    "pytest-xdist",
    "hypothesis",
    "torch==2.13.0",
    "nbclient",
    "nbformat",
    "ipykernel",
]

setup(
    name="rljax",
    version="0.1.0",
    description="JAX-native reinforcement learning for large language models",
    python_requires=">=3.11",
    packages=find_packages(include=["rljax", "rljax.*", "kernels", "kernels.*", "experiments", "experiments.*"]),
    package_data={"rljax.data": ["assets/*.json"]},
    install_requires=CORE,
    extras_require={
        "test": TEST,
        "notebooks": ["nbclient", "nbformat", "ipykernel", "matplotlib"],
        "tfds": ["tensorflow-datasets==4.9.10", "array-record==0.8.6"],
        "tensorboard": ["tensorboardX"],
    },
)
