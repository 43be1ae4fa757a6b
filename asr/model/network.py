"""GRUCTC: causal conv subsampling (2x, 3x or 4x) -> stacked unidirectional GRU -> linear -> CTC log-probs.

Legend: B = batch, T = feature frames (10 ms), U = output frames (10 ms x S), S = config.subsampling,
F = mel bins, C = conv channels, H = hidden size, L = layers, V = vocabulary.

Two kernel-3 convolutions whose strides multiply to S (4 = 2 x 2, 3 = 3 x 1, 2 = 2 x 1). Everything is
causal, so `step` over any chunking of the features gives the same log-probs as `forward` over the whole
utterance: the state carries the GRU hidden state, each convolution's left context, and the 0 to S-1
feature frames that do not yet fill a group of S frames.

Lookahead (config.lookahead = K > 0 output frames): DeepSpeech2's row convolution between the GRU and the
output layer, per channel over K + 1 GRU outputs. Output frame i is the label of time i - K and sees the GRU
outputs i - K .. i, i.e. K frames (K x frame_shift s) of audio after the time it labels: a causal model that
waits K frames. The state carries the last K GRU outputs; the first K outputs of an utterance stand for the
time before it (their GRU inputs are zeros) and are trained as such, so the output count stays T // S and
streaming still equals offline. Word times are shifted back by `config.output_delay`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from asr.model.tokenizer import DEFAULT_TOKENS

FEATURE_SHIFT = 0.01  # seconds per feature frame (10 ms hop)
STRIDES = {2: (2, 1), 3: (3, 1), 4: (2, 2)}  # subsampling -> (conv1, conv2) strides
CONV_KERNEL = 3  # frames seen by each subsampling convolution
CONV_CONTEXT = CONV_KERNEL - 1  # left-context frames each convolution carries
CELLS = ("gru", "lstm")
MAX_LOOKAHEAD = 4  # output frames


@dataclass
class ModelConfig:
    n_mels: int = 80
    vocab_size: int = 29
    conv_channels: int = 256
    hidden_size: int = 320
    num_layers: int = 3
    cell: str = "gru"  # "gru" or "lstm" (for comparison)
    dropout: float = 0.1
    layer_norm: bool = False  # LayerNorm on the subsampled features before the RNN (speeds up early training)
    subsampling: int = 4  # feature frames per output frame (2, 3 or 4)
    lookahead: int = 0  # output frames the model waits for before labelling one (0: none; see the module doc)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.subsampling not in STRIDES:
            raise ValueError(f"subsampling must be one of {sorted(STRIDES)}, got {self.subsampling!r}")
        if not 0 <= self.lookahead <= MAX_LOOKAHEAD:
            raise ValueError(f"lookahead must be 0 to {MAX_LOOKAHEAD} output frames, got {self.lookahead!r}")

    @property
    def frame_shift(self) -> float:
        """Seconds per output frame."""
        return FEATURE_SHIFT * self.subsampling

    @property
    def output_delay(self) -> float:
        """Seconds between the time an output frame labels and the audio it has seen (the lookahead)."""
        return self.lookahead * self.frame_shift

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class ModelState:
    """Streaming state of a batch of B streams (tensors only; the batch is dim 1 of `hidden`, dim 0 otherwise).

    hidden:  (L, B, H) for a GRU, (L, B, 2H) for an LSTM (h and c side by side)
    ctx1:    (B, CONV_CONTEXT, F) normalised input frames before the chunk
    ctx2:    (B, CONV_CONTEXT, C) first-convolution outputs before the chunk
    pending: (B, P, F) normalised frames not yet in a full group of S, 0 <= P < S
    look:    (B, K, H) the last K GRU outputs, K = config.lookahead (empty without lookahead)

    The row methods let a batch engine keep many streams' states stacked without knowing the layout.
    """

    hidden: torch.Tensor
    ctx1: torch.Tensor
    ctx2: torch.Tensor
    pending: torch.Tensor
    look: torch.Tensor

    @staticmethod
    def batch_dim(name: str) -> int:
        return 1 if name == "hidden" else 0

    def _items(self):
        return ((f.name, getattr(self, f.name)) for f in fields(self))

    @property
    def batch(self) -> int:
        return self.ctx1.shape[0]

    def select(self, rows) -> ModelState:
        """The state of the given rows (a new state)."""
        return ModelState(**{n: t.index_select(self.batch_dim(n), rows) for n, t in self._items()})

    def assign(self, rows, other: ModelState) -> None:
        """Rows `rows` of this state become `other`'s rows, in order (in place; same P)."""
        for name, tensor in self._items():
            tensor.index_copy_(self.batch_dim(name), rows, getattr(other, name))

    def zero(self, row: int) -> None:
        """Row `row` starts afresh (in place)."""
        for name, tensor in self._items():
            tensor.select(self.batch_dim(name), row).zero_()

    def grown(self, batch: int) -> ModelState:
        """This state with zero rows added up to `batch` rows (a new state)."""
        out = {}
        for name, tensor in self._items():
            dim = self.batch_dim(name)
            shape = list(tensor.shape)
            shape[dim] = batch - shape[dim]
            out[name] = torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)
        return ModelState(**out)


STATE_NAMES = ("hidden", "ctx1", "ctx2")  # the state tensors of an exported step, in order ("look" follows)


def state_names(config: ModelConfig) -> tuple[str, ...]:
    """Names of the state tensors an exported step of this model config takes and returns, in order (the
    pending frames stay outside: the exported step takes whole groups of S frames)."""
    return STATE_NAMES + (("look",) if config.lookahead else ())


def initial_state(config: ModelConfig, batch: int = 1, device=None) -> ModelState:
    """The state of `batch` streams before any audio (zeros), laid out for `config`."""
    width = config.hidden_size * (2 if config.cell == "lstm" else 1)
    return ModelState(
        hidden=torch.zeros(config.num_layers, batch, width, device=device),
        ctx1=torch.zeros(batch, CONV_CONTEXT, config.n_mels, device=device),
        ctx2=torch.zeros(batch, CONV_CONTEXT, config.conv_channels, device=device),
        pending=torch.zeros(batch, 0, config.n_mels, device=device),
        look=torch.zeros(batch, config.lookahead, config.hidden_size, device=device),
    )


@runtime_checkable
class StreamingModel(Protocol):
    """What decoding, `Recognizer`, `BatchEngine`, `transcribe` and the server use of a model: `GRUCTC` and the
    exported backends (`asr.model.backends`) implement it.

    tokens: the output vocabulary (index = output id; 0 is the CTC blank)
    config: the `ModelConfig` (frame shift, subsampling, lookahead, state sizes)
    device: where `init_state` and `step` expect their tensors
    source: the file it was loaded from ("" when built in memory); extra: the bundle's metadata
    """

    tokens: list[str]
    config: ModelConfig
    source: str
    extra: dict

    @property
    def device(self) -> torch.device: ...

    def init_state(self, batch: int = 1, device=None) -> ModelState: ...

    def step(self, feats: torch.Tensor, state: ModelState) -> tuple[torch.Tensor, ModelState]: ...


class GRUCTC(nn.Module):
    """The model (see the module doc); `tokens` default to the English character set (asr.model.tokenizer)."""

    def __init__(self, config: ModelConfig | None = None, tokens: list[str] | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.tokens = list(DEFAULT_TOKENS if tokens is None else tokens)
        if len(self.tokens) != config.vocab_size:
            raise ValueError(f"{len(self.tokens)} tokens but the model outputs {config.vocab_size}")
        self.source = ""  # the file it was loaded from (asr.model.checkpoint)
        self.extra: dict = {}  # the bundle's metadata (training, adaptation)
        self.register_buffer("feat_mean", torch.zeros(config.n_mels))
        self.register_buffer("feat_std", torch.ones(config.n_mels))
        stride1, stride2 = STRIDES[config.subsampling]
        self.conv1 = nn.Conv1d(config.n_mels, config.conv_channels, CONV_KERNEL, stride=stride1)
        self.conv2 = nn.Conv1d(config.conv_channels, config.conv_channels, CONV_KERNEL, stride=stride2)
        self.norm = nn.LayerNorm(config.conv_channels) if config.layer_norm else nn.Identity()
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(
            config.conv_channels,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.lookahead = None
        if config.lookahead:
            k, width = config.lookahead, config.hidden_size
            self.lookahead = nn.Conv1d(width, width, k + 1, groups=width, bias=False)
            self.reset_lookahead()
        self.output = nn.Linear(config.hidden_size, config.vocab_size)

    def reset_lookahead(self) -> None:
        """The row convolution as a pass-through of its oldest tap: the model then equals the same model without
        lookahead, delayed by K frames (so a model without lookahead can be fine-tuned into one)."""
        with torch.no_grad():
            self.lookahead.weight.zero_()
            self.lookahead.weight[:, 0, 0] = 1.0

    # -- pieces shared by forward and step ---------------------------------
    def normalize(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.feat_mean) / self.feat_std

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store global feature statistics (F,) computed over training data."""
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-5))

    def _subsample(self, x, ctx1, ctx2):
        """x: (B, S k, F) normalised -> (B, k, C), with the new contexts.

        With CONV_KERNEL - 1 context frames in front, a stride-s convolution over s n frames gives n outputs,
        on the same grid whichever way the frames are chunked.
        """
        x1 = torch.cat([ctx1, x], dim=1)
        y1 = torch.relu(self.conv1(x1.transpose(1, 2))).transpose(1, 2)  # (B, S k / stride2, C)
        x2 = torch.cat([ctx2, y1], dim=1)
        y2 = torch.relu(self.conv2(x2.transpose(1, 2))).transpose(1, 2)  # (B, k, C)
        return self.norm(y2), x1[:, -CONV_CONTEXT:], x2[:, -CONV_CONTEXT:]

    def _rnn(self, x, hidden):
        if self.config.cell == "lstm":
            h, c = hidden.chunk(2, dim=-1)
            y, (h, c) = self.rnn(x, (h.contiguous(), c.contiguous()))
            return y, torch.cat([h, c], dim=-1)
        return self.rnn(x, hidden)

    def _look(self, y, look):
        """y (B, U, H) GRU outputs, look (B, K, H) the ones before -> (B, U, H) row-convolved, new look."""
        if self.lookahead is None:
            return y, look
        full = torch.cat([look, y], dim=1)
        out = self.lookahead(full.transpose(1, 2)).transpose(1, 2)
        return out, full[:, -self.config.lookahead :]

    def _head(self, y):
        return torch.log_softmax(self.output(self.dropout(y)), dim=-1)

    # -- training -----------------------------------------------------------
    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        """feats (B, T, F) raw log-mel, feat_lens (B,) -> log_probs (B, U, V), out_lens (B,).

        U = T // S: a trailing group of fewer than S frames is dropped, as in streaming.
        """
        x, state = self._encode(feats)
        y, _ = self._rnn(x, state.hidden)
        return self._finish(y, state, feat_lens)

    def forward_tapped(self, feats: torch.Tensor, feat_lens: torch.Tensor, layer: int):
        """`forward`, and the outputs (B, U, H) of recurrent layer `layer` (0-based) too: the same computation, the
        layers run one at a time (with the same weights and the same dropout between them) so one can be read."""
        y, state = self._encode(feats)
        tap = None
        for i in range(self.config.num_layers):
            if i:
                y = nn.functional.dropout(y, self.rnn.dropout, self.training)
            y, _ = self._layer(i, y, state.hidden[i : i + 1])
            if i == layer:
                tap = y
        return (*self._finish(y, state, feat_lens), tap)

    def _encode(self, feats: torch.Tensor):
        """(B, T, F) -> the recurrent stack's input (B, U, C) from a fresh state (whole groups of S frames only),
        and that state."""
        B, T, _ = feats.shape
        usable = T - T % self.config.subsampling
        state = self.init_state(B, feats.device)
        x, _, _ = self._subsample(self.normalize(feats[:, :usable]), state.ctx1, state.ctx2)
        return self.dropout(x), state

    def _finish(self, y: torch.Tensor, state: ModelState, feat_lens: torch.Tensor):
        """The recurrent stack's output -> (log_probs (B, U, V), out_lens (B,))."""
        y, _ = self._look(y, state.look)
        return self._head(y), torch.div(feat_lens, self.config.subsampling, rounding_mode="floor")

    def _layer(self, i: int, x: torch.Tensor, hidden: torch.Tensor):
        """Recurrent layer i alone on x (B, U, in) from hidden (1, B, width)."""
        if not hasattr(self, "_one_layer"):  # a one-layer module run with layer i's weights (not a submodule)
            cell = nn.GRU if self.config.cell == "gru" else nn.LSTM
            object.__setattr__(self, "_one_layer", cell(1, 1, batch_first=True))
        weights = {
            f"{name}_l0": getattr(self.rnn, f"{name}_l{i}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        one = self._one_layer
        one.input_size, one.hidden_size = weights["weight_ih_l0"].shape[1], self.config.hidden_size
        if self.config.cell == "lstm":
            h, c = hidden.chunk(2, dim=-1)
            y, (h, c) = torch.func.functional_call(one, weights, (x, (h.contiguous(), c.contiguous())))
            return y, torch.cat([h, c], dim=-1)
        return torch.func.functional_call(one, weights, (x, hidden.contiguous()))

    # -- streaming ----------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.feat_mean.device

    def init_state(self, batch: int = 1, device=None) -> ModelState:
        return initial_state(self.config, batch, self.device if device is None else device)

    def step(self, feats: torch.Tensor, state: ModelState):
        """feats (B, T, F) raw log-mel, any T >= 0 -> (log_probs (B, U, V), new state).

        The input state is not modified. U = (P + T) // S.
        """
        x = self.normalize(feats)
        if state.pending.shape[1]:
            x = torch.cat([state.pending, x], dim=1)
        usable = x.shape[1] - x.shape[1] % self.config.subsampling
        pending = x[:, usable:]
        if usable == 0:
            empty = x.new_zeros(x.shape[0], 0, self.config.vocab_size)
            return empty, ModelState(state.hidden, state.ctx1, state.ctx2, pending, state.look)
        y, ctx1, ctx2 = self._subsample(x[:, :usable], state.ctx1, state.ctx2)
        y, hidden = self._rnn(y, state.hidden)
        y, look = self._look(y, state.look)
        return self._head(y), ModelState(hidden, ctx1, ctx2, pending, look)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
