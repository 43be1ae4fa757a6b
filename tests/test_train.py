"""Tiny real training runs through asr.train.cli.main: end to end, overfitting, resume, DDP, evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf
import torch
from conftest import REPO, synthesize

from asr import load_model
from asr.apps import evaluate
from asr.audio.files import load_audio
from asr.audio.frontend import LogMel
from asr.model import average
from asr.model.checkpoint import load_checkpoint
from asr.train import cli as train
from asr.train import options, runtime, validation
from asr.train.manifests import read_manifest, write_manifest
from asr.train.trainer import Trainer

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "open the door please", "we like green apples"]
TINY = ["--hidden-size", "32", "--num-layers", "1", "--conv-channels", "32", "--num-workers", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    entries = []
    for i, text in enumerate(SENTENCES):
        wav = synthesize(text, folder / f"u{i}.wav")
        entries.append({"id": f"u{i}", "audio": str(wav), "duration": sf.info(str(wav)).duration, "text": text})
    write_manifest(folder / "train.jsonl", entries)
    return folder / "train.jsonl"


def _args(corpus, out, *extra):
    return ["--train", str(corpus), "--out", str(out), *TINY, "--max-batch-seconds", "4", *extra]


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_end_to_end_tiny_training(corpus, tmp_path):
    out = tmp_path / "run"
    argv = _args(corpus, out, "--valid", str(corpus), "--max-steps", "6", "--valid-every", "3", "--log-every", "2")
    assert train.main(argv) == 0
    for name in ("model.pt", "best.pt", "last.pt", "log.jsonl", "curve.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()  # --keep-checkpoints is off by default
    model = load_checkpoint(out / "model.pt")
    assert model.config.hidden_size == 32 and model.tokens[0] == "<blank>"
    assert not torch.equal(model.feat_mean, torch.zeros_like(model.feat_mean))  # normalisation stats stored
    log = _log(out)
    assert [r["step"] for r in log if "valid" not in r] == [2, 4, 6]
    assert [r["step"] for r in log if "valid" in r] == [3, 6]
    assert all(r["audio_seconds_per_second"] > 0 for r in log if "valid" not in r)
    report = tmp_path / "report.tsv"
    assert evaluate.main([str(corpus), "--model", str(out / "best.pt"), "--report", str(report)]) == 0
    rows = report.read_text().splitlines()
    assert rows[0].split("\t") == ["manifest", "id", "ref", "hyp", "errors", "words"] and len(rows) == 5


def test_loss_decreases_when_overfitting(corpus, tmp_path):
    out = tmp_path / "overfit"
    argv = _args(corpus, out, "--max-steps", "60", "--log-every", "10", "--lr", "3e-3", "--warmup-steps", "5")
    argv += ["--no-augment", "--dropout", "0", "--hidden-size", "64", "--max-batch-seconds", "10"]
    assert train.main(argv) == 0
    losses = [r["loss"] for r in _log(out) if "valid" not in r]
    assert losses[-1] < 0.7 * losses[0], losses


def test_resume_continues_exactly(corpus, tmp_path):
    """1 step, resume for 1 more, resume to 8 gives the very weights of 8 uninterrupted steps.

    RNG, sampler position (mid-epoch and at an epoch edge), optimizer and scheduler are restored. The lr
    stays flat after warmup (min ratio 1), so that --max-steps may differ between the runs.
    """
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--checkpoint-every", "2", "--warmup-steps", "3", "--min-lr-ratio", "1", "--epochs", "100"]
    assert train.main(_args(corpus, straight, *common, "--max-steps", "8")) == 0
    for step in (1, 2, 8):
        assert train.main(_args(corpus, split, *common, "--max-steps", str(step), "--resume")) == 0
        assert torch.load(split / "last.pt", weights_only=True)["step"] == step
    a, b = load_checkpoint(straight / "model.pt"), load_checkpoint(split / "model.pt")
    assert b.extra["step"] == 8
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), name


def test_keep_checkpoints_keeps_the_last_saves_for_averaging(corpus, tmp_path):
    out = tmp_path / "kept"
    argv = _args(corpus, out, "--max-steps", "7", "--checkpoint-every", "2", "--keep-checkpoints", "2")
    assert train.main(argv) == 0
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step_6.pt", "step_7.pt"]  # saves at 2, 4, 6 and the last step; the 2 latest kept
    assert load_checkpoint(out / "checkpoints" / "step_6.pt").extra["step"] == 6
    assert average.main([str(tmp_path / "avg.pt"), *(str(out / "checkpoints" / k) for k in kept)]) == 0
    assert load_checkpoint(tmp_path / "avg.pt").extra["averaged"][0].endswith("step_6.pt")


def test_max_minutes_stops_cleanly_with_a_checkpoint(corpus, tmp_path):
    out = tmp_path / "timed"
    assert train.main(_args(corpus, out, "--max-minutes", "1e-9", "--checkpoint-every", "1000")) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1
    assert load_checkpoint(out / "model.pt").extra["step"] == 1


def test_resume_after_kill_9(corpus, tmp_path):
    out = tmp_path / "killed"
    argv = _args(corpus, out, "--checkpoint-every", "2", "--max-steps", "100000", "--epochs", "100000")
    proc = subprocess.Popen([sys.executable, "-m", "asr.train", *argv], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "last.pt").exists() and torch.load(out / "last.pt", weights_only=True)["step"] >= 4:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    saved = torch.load(out / "last.pt", weights_only=True)["step"]
    assert saved >= 4 and saved % 2 == 0
    assert train.main(_args(corpus, out, "--resume", "--max-steps", str(saved + 2))) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == saved + 2
    assert load_checkpoint(out / "model.pt").extra["step"] == saved + 2


def test_a_save_at_a_validation_step_holds_that_validation(corpus, tmp_path, monkeypatch):
    """A run killed right after a save resumes knowing the validation of the save's step: a later, worse score
    must not overwrite best.pt (the save used to come first, and the resumed run forgot the best score)."""
    out, saved = tmp_path / "valid_save", []
    save = Trainer.save

    def recording_save(self):
        save(self)
        saved.append((self.step, torch.load(out / "last.pt", weights_only=True)["best_score"]))

    monkeypatch.setattr(Trainer, "save", recording_save)
    argv = _args(corpus, out, "--valid", str(corpus), "--max-steps", "4", "--checkpoint-every", "2")
    assert train.main([*argv, "--valid-every", "2"]) == 0
    first = next(r for r in _log(out) if r.get("valid") and r["step"] == 2)
    assert saved[0] == (2, first["wer"])


@pytest.mark.slow
def test_ddp_two_gloo_processes(corpus, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "asr.train", *_args(corpus, out, "--max-steps", "4", "--checkpoint-every", "2", "--log-every", "1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["curve.png", "last.pt", "log.jsonl", "model.pt"]
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4]  # rank 0 alone logs
    load_checkpoint(out / "model.pt")


@pytest.mark.slow
def test_ddp_time_budget_stops_every_rank_at_the_same_step(corpus, tmp_path):
    out = tmp_path / "ddp_timed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "asr.train", *_args(corpus, out, "--max-minutes", "1e-9", "--max-steps", "100")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]  # a rank stopping alone would hang the other one
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("rendezvous", ["static", "c10d"])
def test_two_nodes_over_loopback(corpus, tmp_path, rendezvous):
    """Two torchrun agents, one process each, meeting as two machines would: "static" is the recipes' command
    (recipes/corpus_stages.sh: --nnodes, --node_rank, --master_addr/--master_port of node 0), "c10d" torchrun's
    dynamic rendezvous (--rdzv-backend c10d --rdzv-endpoint, the same command on every node)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "nodes"
    train_args = ["-m", "asr.train", *_args(corpus, out, "--max-steps", "3", "--log-every", "1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for node in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
        if rendezvous == "static":
            cmd += ["--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port)]
        else:
            cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "loopback-test"]
        log = open(tmp_path / f"node{node}.log", "w")
        procs.append((subprocess.Popen([*cmd, *train_args], cwd=REPO, stdout=log, stderr=log, env=env), log))
    try:
        codes = [proc.wait(timeout=180) for proc, _ in procs]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    logs = [(tmp_path / f"node{node}.log").read_text() for node in range(2)]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    assert [r["step"] for r in _log(out)] == [1, 2, 3]  # one log: global rank 0 alone writes


def test_init_fine_tunes_from_a_model(corpus, tmp_path):
    """--init takes the model's architecture, weights and feature statistics; training then moves the weights."""
    base = tmp_path / "base"
    assert train.main(_args(corpus, base, "--max-steps", "2")) == 0
    start = load_checkpoint(base / "model.pt")
    tuned = tmp_path / "tuned"
    argv = _args(corpus, tuned, "--init", str(base / "model.pt"), "--hidden-size", "48", "--max-steps", "2")
    assert train.main(argv + ["--lr", "1e-2", "--warmup-steps", "1"]) == 0
    model = load_checkpoint(tuned / "model.pt")
    assert model.config == start.config  # the --init model's architecture, not --hidden-size 48
    assert torch.equal(model.feat_mean, start.feat_mean) and torch.equal(model.feat_std, start.feat_std)
    assert not torch.equal(model.output.weight, start.output.weight)
    trainer = Trainer(options.parse_args(_args(corpus, tmp_path / "fresh", "--init", str(base / "model.pt"))))
    for (name, x), y in zip(trainer.model.state_dict().items(), start.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    embedded = Trainer(options.parse_args(_args(corpus, tmp_path / "embedded", "--init", "default")))
    assert embedded.model.config == load_model(device="cpu").config


def test_init_adds_a_lookahead_to_a_model_without_one(corpus, tmp_path):
    """--init MODEL --lookahead 2: the model's weights, and a row convolution that starts as a pass-through."""
    base = tmp_path / "base"
    assert train.main(_args(corpus, base, "--max-steps", "2")) == 0
    start = load_checkpoint(base / "model.pt")
    trainer = Trainer(
        options.parse_args(_args(corpus, tmp_path / "late", "--init", str(base / "model.pt"), "--lookahead", "2"))
    )
    model = trainer.model
    assert model.config.lookahead == 2 and model.config.hidden_size == start.config.hidden_size
    assert torch.equal(model.rnn.weight_ih_l0, start.rnn.weight_ih_l0)
    assert model.lookahead.weight[:, 0, 0].eq(1).all() and model.lookahead.weight[:, 0, 1:].eq(0).all()
    tuned = tmp_path / "tuned"
    argv = _args(corpus, tuned, "--init", str(base / "model.pt"), "--lookahead", "2", "--max-steps", "2")
    assert train.main(argv + ["--lr", "1e-2", "--warmup-steps", "1"]) == 0
    assert load_checkpoint(tuned / "model.pt").config.lookahead == 2
    assert train.main(_args(corpus, tmp_path / "bad", "--lookahead", "7", "--max-steps", "1")) == 2


def test_freeze_l2_init_and_kl_init_keep_the_model_near_its_start(corpus, tmp_path, capsys):
    """--freeze: the matching parameters stay exactly as --init had them, the others move; --l2-init and
    --kl-init: a strong pull keeps the trained weights (their outputs) nearer their start than without it."""
    base = tmp_path / "base"
    assert train.main(_args(corpus, base, "--max-steps", "2")) == 0
    start = load_checkpoint(base / "model.pt")
    fast = ["--init", str(base / "model.pt"), "--max-steps", "3", "--lr", "1e-2", "--warmup-steps", "1"]
    assert train.main(_args(corpus, tmp_path / "frozen", *fast, "--freeze", "rnn.*", "output.*")) == 0
    frozen = load_checkpoint(tmp_path / "frozen" / "model.pt")
    for name, value in frozen.state_dict().items():
        same = torch.equal(value, start.state_dict()[name])
        assert same == name.startswith(("rnn.", "output.", "feat_")), name

    def distance(model):
        return sum(float((v.detach() - start.state_dict()[k]).square().sum()) for k, v in model.named_parameters())

    def divergence(model):  # of its outputs from the start's, over the corpus's first utterance
        feats = LogMel()(torch.from_numpy(load_audio(read_manifest(corpus)[0]["audio"])))[None]
        lens = torch.tensor([feats.shape[1]])
        with torch.no_grad():
            return float(validation.frame_kl(start(feats, lens)[0], model(feats, lens)[0], lens // 4))

    assert train.main(_args(corpus, tmp_path / "free", *fast)) == 0
    assert train.main(_args(corpus, tmp_path / "pulled", *fast, "--l2-init", "100")) == 0
    assert train.main(_args(corpus, tmp_path / "kept", *fast, "--kl-init", "100")) == 0
    free, pulled, kept = (load_checkpoint(tmp_path / name / "model.pt") for name in ("free", "pulled", "kept"))
    assert distance(pulled) < distance(free) and divergence(kept) < divergence(free)
    capsys.readouterr()
    assert train.main(_args(corpus, tmp_path / "bad", *fast, "--freeze", "nothing.*")) == 2
    assert "--freeze nothing.*: matches no parameter" in capsys.readouterr().err
    assert train.main(_args(corpus, tmp_path / "bad2", "--l2-init", "1", "--max-steps", "1")) == 2
    assert "--l2-init needs --init" in capsys.readouterr().err
    assert train.main(_args(corpus, tmp_path / "bad3", "--kl-init", "1", "--max-steps", "1")) == 2
    assert "--kl-init needs --init" in capsys.readouterr().err


def test_patience_stops_when_the_valid_wer_no_longer_improves(corpus, tmp_path):
    """--patience 2 with a learning rate of 0: the first validation is the best, two more without a better WER."""
    out = tmp_path / "patient"
    argv = _args(corpus, out, "--valid", str(corpus), "--valid-every", "1", "--patience", "2", "--max-steps", "50")
    assert train.main(argv + ["--lr", "0"]) == 0
    valid = [r for r in _log(out) if "wer" in r]
    assert [r["step"] for r in valid] == [1, 2, 3] and load_checkpoint(out / "model.pt").extra["step"] == 3


def test_ties_later_keeps_the_last_of_equal_validations_and_a_flat_score_goes_on(corpus, tmp_path):
    """--ties later with a learning rate of 0 (every validation the same): best.pt is the last one, and --patience
    (which now counts only validations worse than the best) does not stop the run."""
    out = tmp_path / "later"
    argv = _args(corpus, out, "--valid", str(corpus), "--valid-every", "1", "--patience", "2", "--max-steps", "5")
    assert train.main(argv + ["--lr", "0", "--ties", "later"]) == 0
    assert [r["step"] for r in _log(out) if "wer" in r] == [1, 2, 3, 4, 5]
    assert load_checkpoint(out / "best.pt").extra["step"] == 5


def test_select_by_loss_keeps_the_step_of_the_lowest_valid_loss(corpus, tmp_path):
    """--select-by loss: best.pt is the validation with the lowest mean CTC loss, whatever its WER."""
    out = tmp_path / "by_loss"
    argv = _args(corpus, out, "--valid", str(corpus), "--valid-every", "1", "--max-steps", "6", "--select-by", "loss")
    assert train.main(argv) == 0
    valid = [r for r in _log(out) if "wer" in r]
    assert len(valid) == 6 and len({r["loss"] for r in valid}) > 1
    lowest = min(valid, key=lambda r: r["loss"])
    assert load_checkpoint(out / "best.pt").extra["step"] == lowest["step"]


def test_select_on_mean_logs_the_mean_of_the_valid_sets(corpus, tmp_path):
    """--select-on mean: after each validation's sets, a record {"valid": "mean"} with their WER, CER and loss
    averaged, each set weighing the same (here 4 utterances and 2); best.pt is its lowest WER (ties: the earlier)."""
    small = tmp_path / "small.jsonl"
    write_manifest(small, read_manifest(corpus)[:2])
    out = tmp_path / "mean"
    argv = _args(corpus, out, "--valid", str(corpus), str(small), "--valid-every", "2", "--max-steps", "6")
    assert train.main(argv + ["--select-on", "mean", "--lr", "1e-2", "--warmup-steps", "1"]) == 0
    log = [r for r in _log(out) if "valid" in r]
    assert [r["valid"] for r in log] == [str(corpus), str(small), "mean"] * 3
    for first, second, mean in zip(log[::3], log[1::3], log[2::3], strict=True):
        assert (first["utterances"], second["utterances"], mean["utterances"], mean["sets"]) == (4, 2, 6, 2)
        for key in ("wer", "cer", "loss"):
            assert mean[key] == pytest.approx((first[key] + second[key]) / 2)
    means = [r for r in log if r["valid"] == "mean"]
    best = min(means, key=lambda r: r["wer"])  # the first of equal ones
    extra = load_checkpoint(out / "best.pt").extra
    assert (extra["step"], extra["best_wer"]) == (best["step"], best["wer"])


def test_select_on_mean_picks_best_pt_and_counts_patience_on_the_mean(corpus, tmp_path, monkeypatch):
    """The sets' validation results scripted so that the first set is best at step 2, the mean of the two sets at
    step 3, and a mean weighted by utterances (4 and 1) at step 4: --select-on mean keeps step 3 as best.pt and
    stops two validations later (--patience 2); --select-on first (the default) keeps step 2."""
    first = [0.5, 0.4, 0.6, 0.45, 0.5, 0.5]
    second = [0.8, 1.0, 0.2, 0.45, 0.5, 0.5]

    def scripted():
        for a, b in zip(first, second, strict=True):
            yield {"wer": a, "cer": a / 2, "loss": a, "utterances": 4}
            yield {"wer": b, "cer": b / 2, "loss": b, "utterances": 1}

    argv = ["--valid", str(corpus), str(corpus), "--valid-every", "1", "--patience", "2", "--max-steps", "50"]
    for select_on, best, last in (("mean", 3, 5), ("first", 2, 4)):
        results = scripted()
        monkeypatch.setattr("asr.train.trainer.validate", lambda *args, results=results: next(results))
        out = tmp_path / select_on
        assert train.main(_args(corpus, out, *argv, "--select-on", select_on)) == 0
        assert load_checkpoint(out / "best.pt").extra["step"] == best
        assert load_checkpoint(out / "model.pt").extra["step"] == last
        means = [r["wer"] for r in _log(out) if r.get("valid") == "mean"]
        assert means == (pytest.approx([0.65, 0.7, 0.4, 0.45, 0.5]) if select_on == "mean" else [])


def test_init_errors_are_one_line(corpus, tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    for path, message in ((tmp_path / "missing.pt", "no such file"), (broken, "corrupt")):
        assert train.main(_args(corpus, tmp_path / "o", "--init", str(path))) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and str(path) in err and len(err.splitlines()) == 1


def test_config_file_and_cli_override(tmp_path, corpus):
    config = tmp_path / "conf.json"
    config.write_text(json.dumps({"train": [str(corpus)], "out": "x", "hidden_size": 48, "lr": 0.01}))
    args = options.parse_args(["--config", str(config), "--lr", "0.002"])
    assert (args.hidden_size, args.lr, args.train, args.out) == (48, 0.002, [str(corpus)], "x")
    config.write_text(json.dumps({"hiden_size": 48}))
    with pytest.raises(SystemExit):
        options.parse_args(["--config", str(config), "--train", "a", "--out", "b"])


def test_lr_schedule_warmup_then_cosine():
    f = runtime.lr_lambda(warmup=10, total=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_missing_manifest_is_one_line_error(tmp_path, capsys):
    assert train.main(["--train", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such manifest" in err and len(err.splitlines()) == 1


def test_speed_options_reach_the_augmentation(tmp_path):
    base = ["--train", "a", "--out", "b"]
    default = options.augment_config(options.parse_args(base + ["--augment-scale", "0.5"]))
    assert default.speeds == (0.9, 1.0, 1.1) and default.speed_prob == pytest.approx(0.3)
    config = tmp_path / "conf.json"
    config.write_text(json.dumps({"augment_scale": 0.5, "speed_prob": 0.8, "speeds": [0.85, 1.0, 1.15]}))
    wide = options.augment_config(options.parse_args(["--config", str(config)] + base))
    assert wide.speeds == (0.85, 1.0, 1.15) and wide.speed_prob == 0.8 and wide.noise_prob == default.noise_prob
    padded = options.augment_config(options.parse_args(base + ["--pad-prob", "0.4"]))
    assert default.pad_prob == 0 and padded.pad_prob == 0.4
    for bad in (["--speeds", "0.1"], ["--speed-prob", "1.5"], ["--pad-prob", "-1"]):
        with pytest.raises(SystemExit):
            options.parse_args(base + bad)


def test_vtlp_options_reach_the_dataset(corpus, tmp_path):
    """--vtlp-prob and --vtlp-factors: off by default, unscaled by --augment-scale, in the training set's
    augmentation (not the validation sets'); a tiny run with every utterance warped trains."""
    base = ["--train", "a", "--out", "b"]
    assert options.augment_config(options.parse_args(base)).vtlp_prob == 0
    argv = _args(corpus, tmp_path / "vtlp", "--valid", str(corpus), "--augment-scale", "0.5", "--vtlp-prob", "0.7")
    trainer = Trainer(options.parse_args(argv + ["--vtlp-factors", "0.85", "1.12"]))
    config = trainer.train_set.config
    assert (config.vtlp_prob, config.vtlp_factors, trainer.train_set.augment) == (0.7, (0.85, 1.12), True)
    for bad in (["--vtlp-prob", "2"], ["--vtlp-factors", "1.1", "0.9"], ["--vtlp-factors", "0.9", "1.3"]):
        with pytest.raises(SystemExit):
            options.parse_args(base + bad)
    assert train.main(_args(corpus, tmp_path / "run", "--vtlp-prob", "1", "--max-steps", "2")) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2


def test_stream_and_channel_options_reach_the_dataset(corpus, tmp_path):
    """--lead-prob, --stream-prob, --eq-prob, --codec-prob (and their ranges): off by default, unscaled by
    --augment-scale, in the training set's augmentation; a tiny run with all of them on every utterance trains."""
    base = ["--train", "a", "--out", "b"]
    default = options.augment_config(options.parse_args(base + ["--augment-scale", "0.5"]))
    assert (default.lead_prob, default.stream_prob, default.eq_prob, default.codec_prob) == (0, 0, 0, 0)
    on = ["--lead-prob", "0.6", "--stream-prob", "0.3", "--eq-prob", "0.4", "--codec-prob", "0.2"]
    ranges = ["--lead-seconds", "0", "1.5", "--gap-seconds", "0.2", "3", "--zero-share", "0.7"]
    config = options.augment_config(options.parse_args(base + ["--augment-scale", "0.5"] + on + ranges))
    assert (config.lead_prob, config.stream_prob, config.eq_prob, config.codec_prob) == (0.6, 0.3, 0.4, 0.2)
    assert (config.lead_seconds, config.gap_seconds, config.zero_share) == ((0.0, 1.5), (0.2, 3.0), 0.7)
    for bad in (
        ["--lead-prob", "2"],
        ["--gap-seconds", "2", "1"],
        ["--lead-seconds", "-1", "1"],
        ["--zero-share", "-0.1"],
    ):
        with pytest.raises(SystemExit):
            options.parse_args(base + bad)
    every = ["--lead-prob", "1", "--stream-prob", "1", "--eq-prob", "1", "--codec-prob", "1", "--max-steps", "2"]
    assert train.main(_args(corpus, tmp_path / "run", *every)) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 2


def test_init_widen_starts_from_the_widened_model(corpus, tmp_path, capsys):
    """--init MODEL --widen H: the run starts from MODEL widened to H units a layer (asr.model.widen, seeded noise),
    trains it, and --select-by cer keeps the step of the lowest validation CER."""
    base = tmp_path / "base"
    assert train.main(_args(corpus, base, "--max-steps", "2")) == 0
    start = load_checkpoint(base / "model.pt")
    argv = _args(corpus, tmp_path / "wide", "--init", str(base / "model.pt"), "--widen", "48")
    trainer = Trainer(options.parse_args(argv))
    assert trainer.model.config.hidden_size == 48 and trainer.model.rnn.weight_hh_l0.shape == (3 * 48, 48)
    assert torch.equal(trainer.model.conv1.weight, start.conv1.weight)
    out = tmp_path / "tuned"
    argv = _args(corpus, out, "--init", str(base / "model.pt"), "--widen", "48", "--valid", str(corpus))
    argv += ["--valid-every", "1", "--max-steps", "4", "--select-by", "cer", "--lr", "1e-2", "--warmup-steps", "1"]
    assert train.main(argv) == 0
    valid = [r for r in _log(out) if "cer" in r]
    assert load_checkpoint(out / "best.pt").config.hidden_size == 48
    assert load_checkpoint(out / "best.pt").extra["step"] == min(valid, key=lambda r: r["cer"])["step"]
    capsys.readouterr()
    for extra, message in ((["--widen", "16"], "not wider"), (["--widen", "48", "--init", ""], "--widen needs --init")):
        assert train.main(_args(corpus, tmp_path / "bad", "--init", str(base / "model.pt"), *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
