"""K seeds in one trial: every network with a leading seed dimension, run per seed by `vmap`.

A trial with `seeds_per_trial: K` trains seeds s, s + 1, …, s + K − 1 side by side. Its module
is the method's own, built once per seed and then stacked in place (`stack_seeds`): every
parameter and buffer becomes one (K, …) tensor, so the optimizers, the Polyak updates and the
checkpoints handle the K seeds as they handle one. The method's losses are its own, written for
one seed (`O2OLearner.seed_losses`): they run once per seed under `torch.func.vmap` over
`functional_call` (`PerSeed`), each seed seeing its own (…)-shaped slice of every parameter
and its own minibatch. The K losses are
summed before one backward: the seeds share no parameter, so each seed's gradient is its own
loss's, and Adam (element-wise) keeps K independent moment estimates in its (K, …) state.

During seed i's call the module itself holds seed i's slices (`functional_call` swaps them in),
so a method's hooks that read the learner's module see that seed's networks too.

Random draws inside a method's losses (TD3's target smoothing, a sampled action) differ per
seed (`randomness="different"`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap


SHARED = "seed_shared_buffers"
"""A module class attribute naming buffers of its own that hold one value for the whole trial (a
phase flag), which `stack_seeds` leaves unstacked and every seed reads as it is."""


def stack_seeds(module: nn.Module, copies: Sequence[nn.Module]) -> None:
    """Replace each parameter and buffer of `module` by the stack of its value in `module` and in
    each of `copies` (same architecture, any device): (K, …) with K = 1 + len(copies), seed 0
    first, on `module`'s device; a submodule's `seed_shared_buffers` stay as they are. Stacked
    parameters keep their `requires_grad` (frozen targets stay frozen)."""
    others = [dict(c.named_modules()) for c in copies]
    for name, sub in module.named_modules():
        for key, value in list(sub._parameters.items()):
            if value is not None:
                stacked = torch.stack([value.data, *(o[name]._parameters[key].data.to(value.device) for o in others)])
                sub._parameters[key] = nn.Parameter(stacked, requires_grad=value.requires_grad)
        for key, value in list(sub._buffers.items()):
            if value is not None and key not in getattr(sub, SHARED, ()):
                sub._buffers[key] = torch.stack([value, *(o[name]._buffers[key].to(value.device) for o in others)])


def _stacked(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module`'s tensors that carry a seed dimension, by dotted name: every parameter and buffer
    but its seed-shared buffers."""
    shared = {
        f"{name}.{key}" if name else key
        for name, sub in module.named_modules()
        for key in getattr(sub, SHARED, ())
    }
    return {k: v for k, v in (*module.named_parameters(), *module.named_buffers()) if k not in shared}


@torch.no_grad()
def reinitialize_linear_(module: nn.Module) -> None:
    """Give every `nn.Linear` in `module` a fresh default initialization in place (its tensors,
    and so an optimizer's and the weight sync's references to them, stay); stacked over seeds,
    each seed's slice as its own `nn.Linear` would draw it."""
    for layer in module.modules():
        if not isinstance(layer, nn.Linear):
            continue
        if layer.weight.dim() == 2:
            layer.reset_parameters()
            continue
        for i in range(layer.weight.shape[0]):
            fresh = nn.Linear(layer.in_features, layer.out_features, device=layer.weight.device)
            layer.weight[i].copy_(fresh.weight)
            layer.bias[i].copy_(fresh.bias)


class _Bound(nn.Module):
    """`fn(module, *args)` as a module's forward, so `functional_call` can swap the module's
    tensors for one seed's slices around any function of it, not only its `forward`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        return fn(self.module, *args)


class PerSeed:
    """`fn(module, *args)` once per seed of a stacked `module`, batched: seed i's call sees its
    tensors' slices [i] (its seed-shared buffers whole) and the slices [i] of every tensor in
    `args` (each (K, …), nested dicts and tuples included); what `fn` returns comes back with a
    leading K on each tensor. The module's tensors are gathered once, here: they keep their
    identity for the trial (optimizers, weight syncs and checkpoint loads write into them), so
    an update or an env step pays only the batched call."""

    def __init__(self, module: nn.Module) -> None:
        self.bound = _Bound(module)
        self.state = {f"module.{k}": v for k, v in _stacked(module).items()}

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        def one(state: dict[str, torch.Tensor], *lane_args: Any) -> Any:
            return functional_call(self.bound, state, (fn, lane_args), strict=False)

        return vmap(one, randomness="different")(self.state, *args)


def seed_module(module: nn.Module, index: int) -> Callable[..., Any]:
    """Seed `index`'s copy of a stacked `module`, as a function of its forward's arguments: the
    module run with that seed's slices of its tensors (its seed-shared buffers whole)."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        return functional_call(module, {k: v[index] for k, v in _stacked(module).items()}, args, kwargs)

    return forward


class SeedView(nn.Module):
    """Seed `index` of a stacked RLModule, as an RLModule the evaluation acts with: its
    `forward_inference` runs the module with that seed's tensors."""

    def __init__(self, module: nn.Module, index: int) -> None:
        super().__init__()
        self.stacked = [module]  # a list: not a child, so this view owns no parameter
        self.index = index

    def forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        with torch.no_grad():
            return seed_module(self.stacked[0], self.index)(batch, **kwargs)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global generator seeded with `seed` inside, restored after: one seed's networks
    are initialized from its own seed without disturbing the trial's stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
