"""The README's opening commands and Python example work as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_set_up_test_and_run_commands():
    root = Path(__file__).resolve().parents[1]
    first = [line.split("#")[0].strip() for line in code_blocks("bash")[0].splitlines()]
    assert first[0] == "bash scripts/setup-dev.sh"
    assert first[1] == ".venv/bin/pytest"
    assert first[2].startswith(".venv/bin/swinface analyze src/swinface/assets/astronaut.jpg")
    assert root.joinpath("src/swinface/assets/astronaut.jpg").is_file()
    # CI sets up and tests exactly as the README says.
    ci = [line.strip() for line in root.joinpath(".ci/run").read_text().splitlines()]
    assert first[0] in ci and first[1] in ci
    setup = root.joinpath("scripts/setup-dev.sh").read_text()
    assert "pip install -e '.[dev]'" in setup


def test_python_example_runs_as_written(monkeypatch, capsys):
    """Run the example with the small untrained model in place of the download."""
    import torch

    import swinface.weights.loading as loading
    from swinface.model import create_model

    def small_model(weights=None, *, device="auto", download=True):
        assert weights is None  # the example uses the default weights
        torch.manual_seed(0)
        return create_model("swinface_nano").eval()

    monkeypatch.setattr(loading, "load_model", small_model)
    (example,) = code_blocks("python")
    example = example.replace("FaceAnalyzer(model)", 'FaceAnalyzer(model, backend="eager")')
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("(178.")  # the one face of the sample photo: its box, ...
    assert out[1].endswith("astronaut.jpg 1 None")  # many photos: the sample, one face
    assert out[2].startswith("missing.jpg 0 missing.jpg: ")  # and the missing one, its error
    assert out[3].endswith("(64,)")  # the aligned face's results (nano's embedding: 64 numbers)
    assert out[4].startswith("[[")  # the raw expression logits


@pytest.mark.parametrize(
    "command", [line for line in code_blocks("bash")[0].splitlines() if "swinface" in line]
)
def test_readme_commands_name_real_options(command):
    from swinface.cli import build_parser

    parser = build_parser()
    words = command.split("#")[0].split()[1:]
    if "analyze" in words:
        args = parser.parse_args(words)
        assert args.annotate == "annotated/"
