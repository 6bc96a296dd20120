"""YAML loading: every mistake is reported as file:line with a fix; good files build graphs."""

import textwrap

import pytest

from pipeline import PipelineError
from pipeline.loader import load, load_text
from pipeline.testing import run_yaml

GOOD = """\
voxpipe: 1
name: t
processors:
  src:  {type: "procs:Counter", params: {count: 5}}
  gain: {type: "procs:Gain", params: {factor: 3}}
  out:  {type: "procs:Collect"}
links:
  - src -> gain -> out
"""


def problems(text, **kw):
    with pytest.raises(PipelineError) as info:
        load_text(textwrap.dedent(text), file="p.yaml", **kw)
    return str(info.value)


def test_good_pipeline_builds_and_checks():
    """A correct file gives a wired graph with its formats."""
    g = load_text(GOOD, file="p.yaml")
    assert list(g.nodes) == ["src", "gain", "out"]
    assert str(g.formats["out"]) == "24000 Hz int16 mono"


def test_not_yaml():
    """A YAML syntax error names the line."""
    msg = problems("voxpipe: 1\nprocessors:\n  a: {type: x\n")
    assert msg.startswith("p.yaml:4: not valid YAML")


def test_wrong_top_level_key():
    """A misspelt top-level key gets a suggestion."""
    msg = problems(GOOD.replace("links:", "linkz:"))
    assert "p.yaml:7: unknown top-level key 'linkz'" in msg and "did you mean 'links'?" in msg


def test_unknown_processor_type_suggests_the_closest():
    """An unknown type says 'did you mean'."""
    msg = problems(GOOD.replace('"procs:Gain"', "audio.gian"))
    assert "p.yaml:5: processor 'gain': unknown processor type 'audio.gian'" in msg
    assert "did you mean 'audio.gain'?" in msg


def test_unknown_param_suggests_the_closest():
    """A misspelt param names the line of the param and the right spelling."""
    text = GOOD.replace('  gain: {type: "procs:Gain", params: {factor: 3}}',
                        '  gain:\n    type: "procs:Gain"\n    params:\n      label: x\n      factr: 3')
    msg = problems(text)
    assert "p.yaml:9: processor 'gain': unknown param 'factr'" in msg
    assert "did you mean 'factor'?" in msg


def test_mistyped_param_names_the_expected_type():
    """A value of the wrong type says what was expected."""
    msg = problems(GOOD.replace("{factor: 3}", "{factor: loud}"))
    assert "p.yaml:5: processor 'gain': param 'factor'" in msg and "'loud'" in msg and "must be a whole number" in msg


def test_link_to_unknown_node():
    """A link naming a node that does not exist is reported on the link's line."""
    msg = problems(GOOD.replace("src -> gain -> out", "src -> gian -> out"))
    assert "p.yaml:8: link 'src -> gian -> out': unknown node 'gian'" in msg and "did you mean 'gain'?" in msg


def test_node_never_linked():
    """A processor left out of the links is reported on its own line."""
    msg = problems(GOOD.replace("  out:  {type: \"procs:Collect\"}", "  out:  {type: \"procs:Collect\"}\n  lost: {type: \"procs:Gain\"}"))
    assert "p.yaml:7: processor 'lost' is never linked" in msg


def test_downstream_cycle():
    """A loop in the downstream links is rejected."""
    msg = problems(GOOD + "  - out -> gain\n")
    assert "downstream cycle" in msg and "p.yaml:" in msg


def test_duplicate_node_id():
    """The same id twice names both lines."""
    msg = problems(GOOD.replace('  out:  {type: "procs:Collect"}', '  gain: {type: "procs:Collect"}'))
    assert "p.yaml:6: duplicate node id 'gain' (first defined on line 5)" in msg


def test_format_mismatch_names_both_ends_and_the_fix():
    """A rate mismatch names the link, both formats and the resample processor that fixes it."""
    msg = problems(GOOD.replace('{type: "procs:Collect"}', '{type: "procs:Wants16k"}'))
    assert "p.yaml:8: link gain -> out: 24000 Hz int16 mono into 16000 Hz int16 mono" in msg
    assert "{type: audio.resample, params: {rate: 16000, channels: 1, dtype: int16}}" in msg


def test_unset_env_var_without_default():
    """${VAR} with VAR unset and no default is an error on that line."""
    msg = problems(GOOD.replace("{count: 5}", '{count: "${FRAMES}"}'), env={})
    assert "p.yaml:4: environment variable FRAMES is not set" in msg and "${FRAMES:-value}" in msg


def test_env_interpolation_and_defaults_are_typed():
    """${VAR:-default} takes the YAML type of the value it expands to."""
    g = load_text(GOOD.replace("{count: 5}", '{count: "${FRAMES:-7}"}'), env={})
    assert g.nodes["src"].processor.params.count == 7
    g = load_text(GOOD.replace("{count: 5}", '{count: "${FRAMES:-7}"}'), env={"FRAMES": "9"})
    assert g.nodes["src"].processor.params.count == 9


def test_import_path_that_does_not_import():
    """A bad module path reports the ImportError's message, not a traceback."""
    msg = problems(GOOD.replace('"procs:Gain"', '"nosuchpkg.mod:Gain"'))
    assert "p.yaml:5: processor 'gain': cannot import 'nosuchpkg.mod'" in msg and "No module named 'nosuchpkg'" in msg


def test_import_path_to_something_that_is_not_a_processor():
    """An import path to a function is refused with the reason."""
    msg = problems(GOOD.replace('"procs:Gain"', '"procs:not_a_processor"'))
    assert "is not a subclass of pipeline.Processor" in msg


def test_overrides_are_typed_by_the_param_model():
    """--set node.param=value overrides, typed; a bad --set says why."""
    g = load_text(GOOD, overrides=["gain.factor=5", "gain.label=loud"])
    assert g.nodes["gain"].processor.params.factor == 5
    with pytest.raises(PipelineError, match="no processor 'gian'"):
        load_text(GOOD, overrides=["gian.factor=5"])
    with pytest.raises(PipelineError, match="expected `node.param=value`"):
        load_text(GOOD, overrides=["factor=5"])


def test_several_problems_are_reported_together():
    """All problems of a file come in one error, each with its line."""
    msg = problems(GOOD.replace("{factor: 3}", "{factr: 3}").replace("links:", "lnks:"))
    assert msg.count("p.yaml:") >= 2


def test_missing_file_names_it(tmp_path):
    """A pipeline path that does not exist is a clear error."""
    with pytest.raises(PipelineError, match="no such pipeline file"):
        load(tmp_path / "nope.yaml")


@pytest.mark.anyio
async def test_yaml_pipeline_runs_end_to_end(tmp_path):
    """A loaded pipeline with an import-path processor runs to the end."""
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    from procs import Collect

    result = await run_yaml(path)
    assert result.ok
    assert [int(f.samples[0]) for f in Collect.seen["out"]] == [0, 3, 6, 9, 12]


def test_entry_point_types_are_found(tmp_path, monkeypatch):
    """A package's `voxpipe.processors` entry points are registered types usable in YAML."""
    dist = tmp_path / "voxpipe_extra-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: voxpipe-extra\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[voxpipe.processors]\nextra.gain = procs:Gain\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from pipeline.registry import _entry_points, available_types

    _entry_points.cache_clear()  # entry points are read once per process
    try:
        assert available_types()["extra.gain"] == "procs:Gain"
        g = load_text(GOOD.replace('"procs:Gain"', "extra.gain"))
        assert g.nodes["gain"].type == "extra.gain"
    finally:
        _entry_points.cache_clear()
