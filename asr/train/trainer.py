"""Training loop: CTC on GRUCTC, Adam with warmup + cosine decay, AMP on GPU, torchrun DDP, resume.

    python -m asr.train --train data/train.jsonl:2 extra.jsonl --valid data/dev.jsonl --out exp/run1
    torchrun --nproc_per_node 4 -m asr.train ...        # DDP: gloo on CPU, nccl on CUDA

Learning rate: linear warmup from 0 to --lr over --warmup-steps, then cosine decay to --lr * --min-lr-ratio
at the last step (--max-steps if given, else --epochs x batches per epoch). With --max-minutes, the decay
follows whichever budget runs out first (steps or wall-clock time, resumed runs counted in), so a time-boxed
run on a busy machine still ends at the low learning rate; under DDP the ranks share the slowest rank's clock,
so they agree on the learning rate and on the step to stop at.

OUT holds last.pt (full training state, for --resume; written every --checkpoint-every steps and at the end),
model.pt (latest model bundle) and best.pt (the bundle with the best greedy WER, or --select-by loss, on the first
--valid manifest, or with --select-on mean on the mean over all of them, each weighing the same), log.jsonl (one
JSON object per log line; with --select-on mean, a record {"valid": "mean", ...} after each validation's sets) and
curve.png (loss and valid WER against step).
"""

from __future__ import annotations

import contextlib
import fnmatch
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from asr.model import user_models
from asr.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from asr.model.loading import DEFAULT_MODEL
from asr.model.network import GRUCTC, ModelConfig
from asr.model.tokenizer import CharTokenizer
from asr.model.widen import DEFAULT_NOISE, widen
from asr.train.aux import AuxHead, WithAux, aux_loss
from asr.train.curves import LogWindow, append_log, plot_curve
from asr.train.dataset import ASRDataset, BucketingSampler, collate, compute_stats, load_manifests
from asr.train.manifests import read_manifest
from asr.train.options import MODEL_OPTIONS, TrainError, augment_config, model_config
from asr.train.runtime import (
    _python_tuple,
    keep_recent,
    lr_lambda,
    optimizer_with_parameters,
    pick_device,
    rng_state,
    set_rng_state,
    setup_distributed,
)
from asr.train.validation import MEAN, ctc, frame_kl, mean_result, validate
from asr.util.atomic import atomic_open

STATE_VERSION = 1  # layout of last.pt


class Trainer:
    def __init__(self, args):
        self.args = args
        self.device = pick_device(args.device)
        self.rank, self.world = setup_distributed(self.device)
        self.main = self.rank == 0
        if not self.main:
            warnings.simplefilter("ignore")  # rank 0 reports data problems once
        if args.threads:
            torch.set_num_threads(args.threads)
        self.out = Path(args.out)
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        self.tokenizer = CharTokenizer()

        entries = load_manifests(args.train)
        if not entries:
            raise TrainError(f"no usable training utterances in {' '.join(args.train)}")
        self.train_set = ASRDataset(
            entries,
            self.tokenizer,
            augment=not args.no_augment,
            seed=args.seed,
            config=augment_config(args),
            augment_from_epoch=args.augment_from_epoch,
        )
        self.sampler = BucketingSampler(
            [e["duration"] for e in entries], args.max_batch_seconds, args.seed, True, self.world, self.rank
        )
        self.batches_per_epoch = len(self.sampler)
        self.valid_sets = []
        for path in args.valid:
            valid = read_manifest(path)
            if valid:
                ds = ASRDataset(valid, self.tokenizer, augment=False)
                sampler = BucketingSampler([e["duration"] for e in valid], args.max_batch_seconds, shuffle=False)
                self.valid_sets.append((path, self._loader(ds, sampler)))

        self.step = self.epoch = self.position = 0
        self.elapsed_before = 0.0  # training seconds of earlier runs (resume)
        self.clock = time.monotonic()
        self.shared_elapsed = 0.0  # elapsed() as the ranks agreed on it at the last step (the largest)
        self.best_wer = float("inf")  # the --select-on WER (the first --valid set's, or the mean) at best.pt
        self.best_score = float("inf")  # its --select-by result there
        self.stale_validations = 0  # validations since the best score (--patience)
        self.validated_step = -1
        self.window = LogWindow()
        self.started = time.monotonic()
        resume = self.out / "last.pt"
        if args.resume and resume.exists():
            self.state = torch.load(resume, map_location="cpu", weights_only=True)
            config = ModelConfig.from_dict(self.state["config"])
        else:
            self.state = None
            fields = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
            config = model_config(n_mels=80, vocab_size=len(self.tokenizer), **fields)
        initial = self._initial_model() if self.state is None and args.init else None
        if args.widen is not None and not args.init:
            raise TrainError("--widen needs --init (the model to widen)")
        if initial is not None:
            config = initial.config
            if args.lookahead is not None:
                config = model_config(**{**config.to_dict(), "lookahead": args.lookahead})
        self.model = GRUCTC(config, self.tokenizer.tokens).to(self.device)
        if initial is not None:  # weights and normalisation stats as trained; the optimizer starts afresh
            wanted = self.model.state_dict()
            weights = {k: v for k, v in initial.state_dict().items() if k in wanted}
            if config.lookahead != initial.config.lookahead:  # the row convolution starts as a pass-through
                weights.pop("lookahead.weight", None)
            missing = self.model.load_state_dict(weights, strict=False).missing_keys
            assert set(missing) <= {"lookahead.weight"}, missing
        elif self.state is None and self.main:  # DDP broadcasts rank 0's buffers, the stats among them
            mean, std = compute_stats(entries, args.stats_utterances, args.seed)
            self.model.set_normalization(mean.to(self.device), std.to(self.device))

        self.aux = self._aux_module(config)  # --aux-weight: the model and the auxiliary head, or None
        self.aux_value = 0.0  # the last step's auxiliary loss (unweighted)
        trained = self._trainable_parameters()
        if self.aux is not None:
            trained += [(f"aux.{name}", p) for name, p in self.aux.head.named_parameters()]
        for option, value in (("--l2-init", args.l2_init), ("--kl-init", args.kl_init)):
            if value and not args.init:
                raise TrainError(f"{option} needs --init (the model to stay near)")
        if (args.l2_init or args.kl_init) and initial is None:  # resumed: the --init model again, once
            initial = self._initial_model()
        self.anchor = None  # --l2-init: the --init weights of the trained parameters
        if args.l2_init:
            start = initial.state_dict()
            self.anchor = [(p, start[name].to(self.device)) for name, p in trained if name in start]
        self.reference = None  # --kl-init: the --init model, whose outputs the trained one is kept near
        if args.kl_init:
            self.reference = initial.to(self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam([p for _, p in trained], lr=args.lr, weight_decay=args.weight_decay)
        total = args.max_steps or args.epochs * self.batches_per_epoch
        time_fraction = (lambda: self.shared_elapsed / (args.max_minutes * 60)) if args.max_minutes else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(args.warmup_steps, total, args.min_lr_ratio, time_fraction)
        )
        cuda = self.device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.state is not None:
            self._load_state(self.state)
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if cuda else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.aux or self.model, device_ids=ids)
        self.loader = self._loader(self.train_set, self.sampler)

    def _aux_module(self, config: ModelConfig) -> WithAux | None:
        """--aux-weight: the auxiliary head on --aux-layer, as wide as the training manifests' teacher targets."""
        a = self.args
        if not a.aux_weight:
            return None
        layer = config.num_layers // 2 if a.aux_layer is None else a.aux_layer
        if not 0 <= layer < config.num_layers:
            raise TrainError(f"--aux-layer {layer}: the model's recurrent layers are 0-{config.num_layers - 1}")
        if a.aux_lookahead < 0:
            raise TrainError(f"--aux-lookahead {a.aux_lookahead}: 0 or more output frames")
        dims = self.train_set.enable_aux(config.subsampling)
        if not dims:
            raise TrainError("--aux-weight needs teacher targets: no training entry has a readable 'teacher' file")
        head = AuxHead(config.hidden_size, dims, a.aux_lookahead)
        return WithAux(self.model, head, layer).to(self.device)

    def _trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) of those trained; --freeze turns the others' gradients off."""
        named = list(self.model.named_parameters())
        for pattern in self.args.freeze:
            if not any(fnmatch.fnmatchcase(name, pattern) for name, _ in named):
                raise TrainError(
                    f"--freeze {pattern}: matches no parameter (they are: {', '.join(n for n, _ in named)})"
                )
        trained = []
        for name, param in named:
            frozen = any(fnmatch.fnmatchcase(name, pattern) for pattern in self.args.freeze)
            param.requires_grad_(not frozen)
            if not frozen:
                trained.append((name, param))
        if not trained:
            raise TrainError("--freeze leaves no parameter to train")
        return trained

    def _initial_model(self) -> GRUCTC:
        """The --init model, checked against this run's tokenizer."""
        try:
            model = load_checkpoint(user_models.resolve(self.args.init) or DEFAULT_MODEL)
        except CheckpointError as exc:
            raise TrainError(f"--init {exc}") from None
        if model.tokens != self.tokenizer.tokens:
            raise TrainError(f"--init {self.args.init}: its output tokens differ from the character set trained here")
        if self.args.widen is not None:  # the same widening (seeded) on a resume's --l2-init / --kl-init reload
            try:
                model = widen(model, self.args.widen, noise=DEFAULT_NOISE, seed=self.args.seed)
            except ValueError as exc:
                raise TrainError(f"--widen: {exc}") from None
        return model

    def _loader(self, dataset, sampler):
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.args.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # its own seeds: iterators do not draw from the global RNG (exact resume)
        )

    # -- state ----------------------------------------------------------------------------------------------
    def _training_state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "config": self.model.config.to_dict(),
            "tokens": self.tokenizer.tokens,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "best_wer": self.best_wer,
            "best_score": self.best_score,
            "stale_validations": self.stale_validations,
            "elapsed": self.elapsed(),
            "rng": rng_state(),
            **({"aux_head": self.aux.head.state_dict()} if self.aux is not None else {}),
        }

    def _load_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise TrainError(f"{self.out / 'last.pt'}: training state version {state.get('version')}")
        self.model.load_state_dict(state["model"])
        optimizer = state["optimizer"]
        if self.aux is not None and "aux_head" in state:
            self.aux.head.load_state_dict(state["aux_head"])
        elif self.aux is not None:  # turned on: a fresh head whose Adam moments start at zero
            optimizer = optimizer_with_parameters(optimizer, len(list(self.aux.head.parameters())))
            if self.main:
                print(f"resume: the run had no auxiliary loss; a fresh head from step {state['step']}", file=sys.stderr)
        elif "aux_head" in state:  # turned off: the head and its moments are dropped
            optimizer = optimizer_with_parameters(optimizer, -len(state["aux_head"]))
            if self.main:
                print(
                    f"resume: the run had the auxiliary loss; it goes on without it from step {state['step']}",
                    file=sys.stderr,
                )
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_wer = state["best_wer"]
        self.best_score = state.get("best_score", self.best_wer)  # states before --select-by: the WER
        self.stale_validations = state.get("stale_validations", 0)
        self.elapsed_before = self.shared_elapsed = state.get("elapsed", 0.0)
        rng = state["rng"]
        rng["python"] = _python_tuple(rng["python"])
        set_rng_state(rng)

    def elapsed(self) -> float:
        """Seconds of training so far, earlier (resumed) runs included."""
        return self.elapsed_before + time.monotonic() - self.clock

    def save(self) -> None:
        if not self.main:
            return
        with atomic_open(self.out / "last.pt", "wb") as f:
            torch.save(self._training_state(), f)
        save_checkpoint(self.out / "model.pt", self.model, self.tokenizer.tokens, self._extra())
        if self.args.keep_checkpoints > 0:
            keep_recent(self.out / "model.pt", self.out / "checkpoints", self.step, self.args.keep_checkpoints)

    def _extra(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "best_wer": self.best_wer}

    # -- loop -----------------------------------------------------------------------------------------------
    def _agree(self, skip: bool, stop: bool) -> tuple[bool, bool]:
        """All ranks take the same decision to skip a batch or stop, and share the largest elapsed time."""
        if self.world == 1:
            self.shared_elapsed = self.elapsed()
            return skip, stop
        flags = torch.tensor([float(skip), float(stop), self.elapsed()], dtype=torch.float64, device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self.shared_elapsed = float(flags[2])
        return bool(flags[0]), bool(flags[1])

    def train_step(self, batch) -> float:
        feats, feat_lens, targets, target_lens, *aux = (t.to(self.device, non_blocking=True) for t in batch)
        model = self.ddp or self.aux or self.model
        amp = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with amp:
            log_probs, out_lens, *pred = model(feats, feat_lens)
        loss = ctc(log_probs.float(), targets, out_lens, target_lens)
        if pred:
            value = aux_loss(pred[0].float(), *aux)
            loss = loss + self.args.aux_weight * value
            self.aux_value = value.item()
        if self.anchor:
            loss = loss + self.args.l2_init * sum(((p - p0) ** 2).sum() for p, p0 in self.anchor)
        if self.reference is not None:
            with torch.no_grad(), amp:
                reference, _ = self.reference(feats, feat_lens)
            loss = loss + self.args.kl_init * frame_kl(reference.float(), log_probs.float(), out_lens)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_((self.aux or self.model).parameters(), self.args.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item()

    def run_validation(self) -> None:
        if not (self.main and self.valid_sets) or self.validated_step == self.step:
            return
        self.validated_step = self.step
        results = []
        for path, loader in self.valid_sets:
            results.append(validate(self.model, loader, self.tokenizer, self.device))
            self._log_validation(path, results[-1])
        chosen = results[0]
        if self.args.select_on == MEAN:  # its own record, so that the curves show it
            chosen = mean_result(results)
            self._log_validation(MEAN, chosen)
        self._select(chosen)
        plot_curve(self.out)

    def _log_validation(self, name: str, result: dict) -> None:
        append_log(self.out, {"step": self.step, "epoch": self.epoch, "valid": name, **result})
        if not self.args.quiet:
            print(f"step {self.step} valid {name}: WER {result['wer']:.2%} CER {result['cer']:.2%}", file=sys.stderr)

    def _select(self, result: dict) -> None:
        """The --select-on result: best.pt if it is the best so far, and --patience's count."""
        score, later = result[self.args.select_by], self.args.ties == "later"
        better, tied = score < self.best_score, score == self.best_score
        if better or (later and tied):
            self.best_score, self.best_wer = score, result["wer"]
            save_checkpoint(self.out / "best.pt", self.model, self.tokenizer.tokens, self._extra())
        worse = not score <= self.best_score  # NaN (no utterance) too
        self.stale_validations = 0 if better or (later and not worse) else self.stale_validations + 1

    def fit(self) -> None:
        """Train until --max-steps, --max-minutes, --patience or --epochs ends it; validate and save at the end."""
        a = self.args
        self.clock = self.window.start = self.started = time.monotonic()
        if self.main and not a.quiet:
            n = self.model.num_parameters()
            print(
                f"training {n / 1e6:.2f}M parameters on {self.device} x{self.world}, step {self.step}", file=sys.stderr
            )
        stop = a.max_steps and self.step >= a.max_steps
        while not stop and self.epoch < a.epochs:
            stop = self._epoch()
            if not stop:
                self.epoch += 1
                self.position = 0
        self.run_validation()
        self.save()
        if self.main:
            plot_curve(self.out)
            if not a.quiet:
                print(f"finished at step {self.step}; model in {self.out / 'model.pt'}", file=sys.stderr)

    def _epoch(self) -> bool:
        """The rest of the current epoch, one batch a step; True when a budget or --patience stops training."""
        from tqdm import tqdm

        self.sampler.set_epoch(self.epoch, self.position)
        self.train_set.epoch = self.epoch
        quiet = not self.main or self.args.quiet
        bar = tqdm(
            self.loader, total=self.batches_per_epoch, initial=self.position, desc=f"epoch {self.epoch}",
            disable=quiet, dynamic_ncols=True,
        )  # fmt: skip
        with bar:
            for batch in bar:
                skip, _ = self._agree(batch is None, False)
                if not skip:
                    loss = self.train_step(batch)
                    aux = self.aux_value if self.aux is not None else None
                    self.window.add(loss, float(batch[1].sum()) * 0.01 * self.world, aux)  # 10 ms frames, all ranks
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                self.step += 1
                self.position += 1
                self._after_step()
                if self._should_stop():
                    return True
        return False

    def _after_step(self) -> None:
        """Every --log-every steps a log line, every --checkpoint-every a save, every --valid-every a validation."""
        a = self.args
        if self.main and self.window.steps and self.step % a.log_every == 0:
            window = self.window.take(self.started)
            lr = self.scheduler.get_last_lr()[0]
            append_log(
                self.out, {"step": self.step, "epoch": self.epoch, "loss": window.pop("loss"), "lr": lr, **window}
            )
        if a.valid_every and self.step % a.valid_every == 0:  # before the save, so last.pt holds its best score
            self.run_validation()
            self.window.restart()  # throughput: training time only
        if a.checkpoint_every and self.step % a.checkpoint_every == 0:
            self.save()

    def _should_stop(self) -> bool:
        """All ranks agree: --max-steps reached, --patience run out or --max-minutes spent."""
        a = self.args
        over_steps = a.max_steps and self.step >= a.max_steps
        out_of_patience = a.patience and self.stale_validations >= a.patience  # rank 0 validates
        _, stop = self._agree(False, bool(over_steps or out_of_patience))
        stop = stop or bool(a.max_minutes and self.shared_elapsed > a.max_minutes * 60)
        if stop and out_of_patience and self.main and not a.quiet:
            print(f"no better {a.select_by} in {a.patience} validations: stopping at step {self.step}", file=sys.stderr)
        return stop
