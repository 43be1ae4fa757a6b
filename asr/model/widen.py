"""Net2Net widening (Chen et al., 2016, "Net2Net"): a trained GRUCTC with a wider recurrent stack that computes the
same function, so a model short of capacity can grow without starting from scratch.

    python -m asr.model.widen MODEL OUT --hidden-size 448 [--noise 0.01] [--seed 0]

Each new hidden unit j of every recurrent layer copies an old unit m(j) (the first H are themselves, the others
drawn at random): its gate rows of the input and recurrent weights and biases are m(j)'s. Wherever a unit's output
is read (the recurrent weights, the next layer's input weights, the lookahead row convolution's channel, the output
layer), the c copies of a unit each get 1/c of its outgoing weights, so the sum they feed forward is the old unit's.
By induction over time every copy's state equals its original's, and the widened model's log-probs are the old
model's (exactly, up to float rounding, with --noise 0). --noise adds Gaussian noise of that fraction of each
weight tensor's standard deviation to the widened recurrent and output weights, so the copies can drift apart in
training. The convolution front end, the feature statistics, the tokens and the bundle's metadata are kept.
"""

from __future__ import annotations

import argparse
import sys

import torch

from asr.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from asr.model.network import GRUCTC, ModelConfig

DEFAULT_NOISE = 0.01  # a fraction of each widened tensor's std: the copies drift apart in training


def _unit_map(old: int, new: int, generator: torch.Generator) -> torch.Tensor:
    """new unit -> old unit it copies: 0..old-1 first, then old units drawn at random (without repeats while
    possible, so copies spread evenly)."""
    extra = new - old
    draws = []
    while extra > 0:
        take = min(extra, old)
        draws.append(torch.randperm(old, generator=generator)[:take])
        extra -= take
    return torch.cat([torch.arange(old)] + draws)


def widen(model: GRUCTC, hidden_size: int, noise: float = 0.0, seed: int = 0) -> GRUCTC:
    """A copy of `model` with `hidden_size` units per recurrent layer computing the same function (see the module
    doc); ValueError when it would not be wider."""
    config = model.config
    old = config.hidden_size
    if hidden_size <= old:
        raise ValueError(f"{hidden_size} units a layer is not wider than the model's {old}")
    generator = torch.Generator().manual_seed(seed)
    gates = 3 if config.cell == "gru" else 4
    maps = [_unit_map(old, hidden_size, generator) for _ in range(config.num_layers)]
    counts = [torch.bincount(m, minlength=old).float() for m in maps]

    def rows(weight: torch.Tensor, layer: int) -> torch.Tensor:  # (gates * old, ...) -> (gates * new, ...)
        blocks = weight.reshape(gates, old, *weight.shape[1:])
        return blocks[:, maps[layer]].reshape(gates * hidden_size, *weight.shape[1:])

    def columns(weight: torch.Tensor, layer: int) -> torch.Tensor:  # reads layer's units: split among copies
        return weight[:, maps[layer]] / counts[layer][maps[layer]]

    wide = GRUCTC(ModelConfig.from_dict({**config.to_dict(), "hidden_size": hidden_size}), model.tokens)
    wide.source, wide.extra = model.source, dict(model.extra)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    noisy = set()
    for layer in range(config.num_layers):
        for name in (f"weight_ih_l{layer}", f"weight_hh_l{layer}", f"bias_ih_l{layer}", f"bias_hh_l{layer}"):
            key = f"rnn.{name}"
            weight = rows(state[key], layer)
            if name.startswith("weight_hh"):
                weight = columns(weight, layer)
            if name.startswith("weight_ih") and layer > 0:
                weight = columns(weight, layer - 1)
            state[key] = weight
            noisy.add(key)
    last = config.num_layers - 1
    if config.lookahead:
        state["lookahead.weight"] = state["lookahead.weight"][maps[last]]
    state["output.weight"] = columns(state["output.weight"], last)
    noisy.add("output.weight")
    for key in noisy:
        weight = state[key]
        if noise and weight.dim() > 1:
            weight += noise * weight.std() * torch.randn(weight.shape, generator=generator)
    wide.load_state_dict(state)
    return wide


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="the model bundle to widen")
    p.add_argument("out", help="where to write the widened bundle")
    p.add_argument("--hidden-size", type=int, required=True, help="units per recurrent layer after widening")
    p.add_argument(
        "--noise", type=float, default=DEFAULT_NOISE, help="noise, as a fraction of each weight's std (0: exact)"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        model = load_checkpoint(args.model)
        wide = widen(model, args.hidden_size, args.noise, args.seed)
    except (CheckpointError, ValueError) as exc:
        print(f"widen: error: {exc}", file=sys.stderr)
        return 2
    extra = {**wide.extra, "widened": {"from": model.config.hidden_size, "to": args.hidden_size, "noise": args.noise}}
    save_checkpoint(args.out, wide, extra=extra)
    before, after = model.num_parameters(), wide.num_parameters()
    print(
        f"{args.model}: {model.config.hidden_size} -> {args.hidden_size} units a layer, {before:,} -> {after:,} "
        f"parameters: {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
