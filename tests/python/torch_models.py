"""Tiny models and data for the chimera.torch tests (deterministic from a seed)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WIDTH = 16
VOCAB, CONTEXT, CHANNELS, HEADS = 16, 8, 16, 2


def linear_stack(stages: int, seed: int) -> list[nn.Module]:
    """2 x stages Linear+Tanh layers, two per stage."""
    torch.manual_seed(seed)
    layers = [nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh()) for _ in range(2 * stages)]
    return [nn.Sequential(layers[2 * s], layers[2 * s + 1]) for s in range(stages)]


def linear_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def linear_batch(step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(batch, WIDTH, generator=g), torch.randn(batch, WIDTH, generator=g)


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention."""

    def __init__(self, channels: int = CHANNELS, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.qkv, self.proj = nn.Linear(channels, 3 * channels), nn.Linear(channels, channels)
        self.fc, self.fc_proj = nn.Linear(channels, 4 * channels), nn.Linear(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (y.view(b, t, self.heads, c // self.heads).transpose(1, 2) for y in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, c))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))


class Embed(nn.Module):
    def __init__(self, vocab: int = VOCAB, context: int = CONTEXT, channels: int = CHANNELS) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, channels), nn.Embedding(context, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))


class Head(nn.Module):
    def __init__(self, channels: int = CHANNELS, vocab: int = VOCAB) -> None:
        super().__init__()
        self.ln, self.out = nn.LayerNorm(channels), nn.Linear(channels, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.ln(x))


def gpt(stages: int, seed: int) -> list[nn.Module]:
    """A GPT with one block per stage (stages >= 2); the embedding joins the
    first stage, the head the last."""
    torch.manual_seed(seed)
    blocks = [Block() for _ in range(stages)]
    embed, head = Embed(), Head()
    cut = [nn.Sequential(b) for b in blocks]
    cut[0] = nn.Sequential(embed, blocks[0])
    cut[-1] = nn.Sequential(blocks[-1], head)
    return cut


def gpt_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))


def gpt_batch(step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2000 + step)
    tokens = torch.randint(VOCAB, (batch, CONTEXT + 1), generator=g)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


MODELS = {"linear": (linear_stack, linear_loss, linear_batch), "gpt": (gpt, gpt_loss, gpt_batch)}


def reference(model: str, stages: int, seed: int, micro_batches: int, batch: int, steps: int, lr: float,
              stage_seeds: list[int] | None = None) -> dict:
    """Plain single-process training with the same micro-batches: per step the
    per-micro-batch losses; at the end each stage's parameters and the last
    step's gradients (mean over micro-batches). ``stage_seeds``: stage s is
    taken from the model built with seed stage_seeds[s] (default: all seed)."""
    build, loss_fn, data = MODELS[model]
    seeds = stage_seeds or [seed] * stages
    parts = [build(stages, seeds[s])[s] for s in range(stages)]
    params = [q for part in parts for q in part.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr)
    losses = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        x, y = data(step, batch)
        step_losses = []
        for xm, ym in zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches)):
            out = xm
            for part in parts:
                out = part(out)
            loss = loss_fn(out, ym)
            loss.backward()
            step_losses.append(loss.detach())
        for q in params:
            q.grad.div_(micro_batches)
        optimizer.step()
        losses.append(step_losses)
    return {"losses": losses, "params": [state(part, grads=False) for part in parts],
            "grads": [state(part, grads=True) for part in parts]}


def state(module: nn.Module, grads: bool) -> dict[str, torch.Tensor]:
    return {name: (q.grad if grads else q).detach().clone() for name, q in module.named_parameters()}
