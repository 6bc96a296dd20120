"""The processor reference (docs/reference.md, ``voxpipe processors [NAME]``) and the CLI's
help: generated from the code, current, plain, complete."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pipeline.cli import build_parser, main
from pipeline.loader import load_text
from pipeline.reference import EXAMPLES, example_yaml, reference_markdown, types_table
from pipeline.registry import BUILTINS, resolve_type
from pipelines import shipped

ROOT = Path(__file__).resolve().parent.parent
RST = re.compile(r"(?<!`)``(?!`)|:(class|func|mod|meth|attr):`")


def test_the_committed_reference_is_current():
    committed = (ROOT / "docs/reference.md").read_text()
    assert committed == reference_markdown(), "docs/reference.md is out of date: run `voxpipe processors --markdown docs/reference.md`"


def test_the_reference_covers_every_builtin_type_and_param():
    text = reference_markdown()
    for name in BUILTINS:
        assert f"\n### {name}\n" in text, name
        section = text.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        for param in resolve_type(name).Params.model_fields:
            assert f"| `{param}` |" in section, (name, param)
        assert "```yaml\n" in section and "Takes: " in section
    assert not RST.search(text)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_example_loads(name):
    """The YAML example of each type is a valid node (its params validate, its files exist)."""
    assert name in EXAMPLES
    node = example_yaml(name).replace("speech.wav", str(shipped("samples/hello_16k.wav")))
    graph = load_text(f"voxpipe: 1\nname: example\nprocessors:\n  {node}\n", file="example.yaml")
    assert [n.type for n in graph.nodes.values()] == [name]


def test_every_documented_param_has_a_description():
    missing = [f"{n}.{p}" for n in BUILTINS for p, f in resolve_type(n).Params.model_fields.items() if not f.description]
    assert not missing


def test_processors_lists_plain_text_in_aligned_columns(capsys):
    assert main(["processors"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln and not ln.startswith("voxpipe processors NAME")]
    assert {ln.split()[0] for ln in rows} >= set(BUILTINS)
    starts = {len(ln) - len(ln.split(None, 1)[1]) for ln in rows}
    assert len(starts) == 1, "the summaries do not start in one column"
    assert not RST.search(out) and "`" not in out
    assert out == types_table() + "\n"


def test_processors_name_prints_one_types_reference(capsys):
    assert main(["processors", "vad.energy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vad.energy\n==========\n")
    assert re.search(r"^  threshold\s+float\s+0\.5\s+0\.\.1, higher needs louder", out, re.M)
    assert "example:\n  energy: {type: vad.energy, params: {threshold: 0.5, silence_duration_ms: 500}}" in out
    assert "takes: any audio" in out and not RST.search(out)
    assert main(["processors", "resample"]) == 0  # an alias
    assert capsys.readouterr().out.startswith("audio.resample\n")


def test_processors_unknown_name_is_one_line_with_a_suggestion(capsys):
    assert main(["processors", "vad.enrgy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'vad.energy'?" in err


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands(build_parser())))
def test_every_option_of_every_subcommand_is_documented_with_its_default(command):
    sub = _subcommands(build_parser())[command]
    text = sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"voxpipe {command} {action.dest}: no help"
        if action.default not in (None, False, argparse.SUPPRESS, []) and action.option_strings:
            shown = " ".join(text.split())  # help is wrapped
            assert f"(default: {action.default})" in shown, f"voxpipe {command} {action.option_strings[0]}: default not shown"
        elif action.option_strings and action.default is None and action.nargs != 0:
            assert "default" in action.help or "without" in action.help, f"voxpipe {command} {action.option_strings[0]}: what if it is not given?"
