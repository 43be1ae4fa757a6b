"""The README's examples run as written."""

from __future__ import annotations

import ast
import re

from conftest import REPO

import asr


def readme_block(heading: str, language: str = "python") -> str:
    """The first ```LANGUAGE block after the README's `## HEADING`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"\n## {heading}\n") :]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_streaming_example_runs_and_gives_the_offline_text(default_model, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    exec(compile(readme_block("Stream"), "README.md (## Stream)", "exec"), {})
    printed = [ast.literal_eval(line) for line in capsys.readouterr().out.splitlines()]
    assert any("partial" in r for r in printed) and "text" in printed[-1]
    text = " ".join(r["text"] for r in printed if r.get("text"))
    assert text == asr.transcribe(default_model, REPO / "examples" / "hello.wav")["text"]


def test_the_cpu_only_setup_installs_what_the_setup_command_does():
    """The CPU variant pins the torch and torchaudio of the setup command (which CI runs), from PyTorch's CPU index,
    and installs and runs the same after them."""
    text = (REPO / "README.md").read_text()
    setup = re.search(r"<!-- setup-command -->\n```\n(.*?)```", text, re.S).group(1)
    cpu = re.search(r"\nWithout an NVIDIA GPU.*?```\n(.*?)```", text[text.index("## Two commands") :], re.S)
    assert cpu, "no CPU-only variant of the setup command in the README's Two commands"
    cpu = cpu.group(1)
    pins = re.findall(r"torch(?:audio)?==\S+", setup)
    assert len(pins) == 2 and re.findall(r"torch(?:audio)?==\S+", cpu) == pins
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu and "-e ." in cpu
    assert setup.split("-e . ")[1] in cpu  # the same first transcription
