# %% [markdown]
# # The model side: a Hugging Face checkpoint, KV-cache sampling, per-token statistics
#
# rljax's policy is a Flax NNX decoder (Llama 3, Qwen2, Qwen3) that reads and writes ordinary
# Hugging Face checkpoints. This notebook
#
# 1. makes a tiny random Qwen3-style model and saves it as a local HF checkpoint (`save_hf`),
# 2. loads it back (`load_hf`) and checks it against `transformers` in PyTorch,
# 3. samples two turns of a conversation with the KV cache (`rljax.sampling.DecodeSession`),
# 4. reads per-token log-probs and entropies through the vocabulary kernel
#    (`kernels.token_stats`) and checks that they equal the sampler's log-probs, the equality
#    that makes an RL importance ratio meaningful.
#
# To use a real model instead, point `load_hf` at any local Llama/Qwen2/Qwen3 checkpoint folder.

# %%
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from rljax import kernels
from rljax.data import end_token_id, load_tokenizer, render_observation, render_prompt
from rljax.envs import registry
from rljax.models import Decoder, ModelConfig, load_hf, save_hf
from rljax.sampling import DecodeSession, Temperature

# %% [markdown]
# ## 1. A tiny model, saved as a Hugging Face checkpoint
#
# `ModelConfig.tiny` is a 128-wide Qwen3-style decoder; we take 2 layers and size the vocabulary
# to rljax's built-in tokenizer. Saving the tokenizer next to the weights makes the folder a
# complete checkpoint (`ModelSection(hf_path=...)` in an experiment config loads both).

# %%
tokenizer = load_tokenizer()
config = ModelConfig.tiny(vocab_size=len(tokenizer), num_layers=2)
model = Decoder(config, rngs=nnx.Rngs(0))
params = nnx.state(model, nnx.Param)
print(config)
print(f"{sum(x.size for x in jax.tree.leaves(params)):,} parameters")

checkpoint = pathlib.Path(tempfile.mkdtemp(prefix="rljax-tiny-qwen3-"))
save_hf(model, checkpoint)
tokenizer.save_pretrained(checkpoint)
print(sorted(path.name for path in checkpoint.iterdir()))

# %% [markdown]
# ## 2. Load it back, and check it against `transformers`
#
# `load_hf` reads `config.json` and the safetensors into an NNX `Decoder`; with `mesh=` it places
# each parameter with its partition rule. The same folder loads in PyTorch with `transformers`.

# %%
policy = load_hf(checkpoint)
task = registry.make("arithmetic", digits=2, num_operands=2, operators="+-").generate("heldout", 0)
prompt = render_prompt(tokenizer, task.prompt, task.system)
tokens = jnp.asarray(prompt.tokens, jnp.int32)[None]  # [1, T]
logits = policy.logits(tokens)  # [1, T, V] float32
np.testing.assert_array_equal(logits, model.logits(tokens))
print(f"prompt: {tokenizer.decode(prompt.tokens)!r} ({tokens.shape[1]} tokens)")

# %%
import torch  # noqa: E402
import transformers  # noqa: E402

torch_model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
with torch.no_grad():
    torch_logits = torch_model(torch.tensor(np.asarray(tokens))).logits.numpy()
gap = float(np.abs(torch_logits - np.asarray(logits)).max())
print(f"{type(torch_model).__name__}: max |logit difference| vs rljax = {gap:.2e}")
assert gap < 1e-4

# %% [markdown]
# ## 3. Sampling with the KV cache
#
# A `DecodeSession` holds B conversations in one KV cache. `prefill` starts them from their
# prompts, `generate` samples a turn for every active row (one jitted `lax.while_loop`,
# `rljax.sampling.decode`, stopping at the end-of-turn token), and `append` adds an environment
# observation without recomputing the context. The model is untrained, so the text is noise.

# %%
arithmetic = registry.make("arithmetic", digits=2, num_operands=2, operators="+-")
tasks = [arithmetic.generate("heldout", i) for i in range(4)]
prompts = [render_prompt(tokenizer, t.prompt, t.system).tokens.tolist() for t in tasks]
session = DecodeSession(
    policy, batch_size=len(prompts), max_len=128, strategy=Temperature(1.0), key=jax.random.key(0)
)
session.prefill(prompts)
stop = [{end_token_id(tokenizer)}] * len(prompts)
first = session.generate(max_new_tokens=[16] * 4, stop_tokens=stop, active=[True] * 4)
for t, g in zip(tasks, first):
    print(f"{t.prompt!r:28} -> {tokenizer.decode(g.tokens)!r} (stopped: {g.stopped})")

feedback = "Wrong format: answer as <answer>N</answer>."
observation = render_observation(tokenizer, feedback).tokens.tolist()
session.append([observation if not g.stopped else [] for g in first])
second = session.generate(max_new_tokens=[8] * 4, stop_tokens=stop, active=[True] * 4)
print("context lengths after two turns:", session.lengths)

# %% [markdown]
# ## 4. Per-token log-probs and entropies through the kernel
#
# Training never materialises [N, V] logits: `kernels.token_stats(hidden, unembedding, targets)`
# sweeps the vocabulary in tiles and returns each target's log-prob and the full-vocabulary
# entropy (on CPU it picks the XLA-chunked implementation; Pallas on GPU/TPU). We rebuild row 0's
# whole context (prompt, first turn, observation, second turn) and score it in one forward pass.
# The hidden state at position t predicts token t + 1, hence the shift.

# %%
row = 0
context = (
    prompts[row]
    + first[row].tokens
    + (observation if not first[row].stopped else [])
    + second[row].tokens
)
sequence = jnp.asarray(context, jnp.int32)[None]  # [1, T]
hidden, _ = policy(sequence)  # [1, T, H]
stats = kernels.token_stats(hidden[0, :-1], policy.unembedding, sequence[0, 1:])
# The reference materialises [T-1, V] log-probs: fine for a tiny model, what the kernel avoids.
reference = jax.nn.log_softmax(policy.logits(sequence)[0, :-1], axis=-1)
target_logprobs = jnp.take_along_axis(reference, sequence[0, 1:, None], 1)[:, 0]
np.testing.assert_allclose(stats.logprob, target_logprobs, atol=1e-5)
np.testing.assert_allclose(stats.entropy, -(jnp.exp(reference) * reference).sum(-1), atol=1e-4)
print("kernel log-probs and entropies match the full-softmax reference")

# %% [markdown]
# The sampler reported, for each generated token, its log-prob under the sampling distribution.
# Re-scoring the same tokens with the training forward pass gives the same numbers: with
# temperature 1 and no top-k/top-p, pi_old in the importance ratio is exactly the behaviour
# policy.

# %%
start = len(prompts[row]) - 1  # stats[i] scores token i + 1
rescored = np.asarray(stats.logprob[start : start + len(first[row].tokens)])
np.testing.assert_allclose(rescored, first[row].logprobs, atol=1e-4)
print(
    f"max |sampler - training log-prob| over {len(rescored)} tokens: "
    f"{np.abs(rescored - np.asarray(first[row].logprobs)).max():.1e}"
)

# %%
labels = tokenizer.convert_ids_to_tokens(context[1:])
fig, axes = plt.subplots(
    2, 1, figsize=(min(16, 0.22 * len(labels) + 2), 5), sharex=True, layout="constrained"
)
positions = np.arange(len(labels))
generated = np.zeros(len(labels), bool)
generated[start : start + len(first[row].tokens)] = True
generated[len(context) - 1 - len(second[row].tokens) :] = True
for ax, values, name in (
    (axes[0], stats.logprob, "log-prob of the token"),
    (axes[1], stats.entropy, "entropy (nats)"),
):
    ax.bar(positions, np.asarray(values), color=np.where(generated, "tab:red", "tab:gray"))
    ax.set_ylabel(name)
axes[0].set_title("row 0: prompt and observation (grey) vs sampled tokens (red)")
axes[1].axhline(np.log(config.vocab_size), color="k", linewidth=0.6, linestyle="--")
axes[1].set_xticks(positions, labels, rotation=90, fontsize=6)
print(f"uniform entropy would be log V = {np.log(config.vocab_size):.2f} nats")
