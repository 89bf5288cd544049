"""`charrnn inspect` end to end: the table, --json, --unit (on and off a terminal), bad units, stdin, --unknown."""

import json
import re

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.probe.features import NAMES

TEXT = ('def f(a, b):\n    return [a, (b + 1)]  # "x" it\'s\nTHE cat sat on 42 mats.\n' * 30)
GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}
TINY = ("--hidden", "8", "--layers", "2", "--embed", "4", "--batch", "4", "--seq", "16", "--steps", "10",
        "--seed", "1")


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspect") / "text.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture(scope="module", params=["lstm", "gru", "rnn"])
def model(request, corpus):
    out = corpus.parent / f"{request.param}.npz"
    result = cli("train", corpus, "-o", out, "--cell", request.param, *TINY)
    assert result.exit_code == 0, result.stderr
    return out, request.param


def no_nan(text):
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_table_names_every_feature_and_the_gates(model, corpus):
    path, cell = model
    result = cli("inspect", corpus, "-c", path)
    assert result.exit_code == 0, result.stderr
    assert all(name in result.stdout for name in NAMES)
    assert re.search(r"\d:\d+(:c)? [+-]0\.\d{3}", result.stdout)
    gates = GATES[cell]
    assert all(f"gate {g}" in result.stdout for g in gates) and ("saturated" in result.stdout) == bool(gates)


def test_json_ranks_units_by_absolute_r_and_has_no_nan(model, corpus):
    path, cell = model
    result = cli("inspect", corpus, "-c", path, "--json", "--chars", "500", "--top", "0")
    assert result.exit_code == 0, result.stderr
    report = no_nan(result.stdout)
    assert report["chars"] == 500 and {"features", "gates", "chars"} <= set(report)
    n_units = 2 * 8 * (2 if cell == "lstm" else 1)
    assert report["units"] == n_units
    for name in NAMES:
        ranked = report["features"][name]
        assert len(ranked) == n_units
        rs = [abs(e["r"]) for e in ranked]
        assert rs == sorted(rs, reverse=True) and all(r <= 1 for r in rs)
        assert len({e["unit"] for e in ranked}) == n_units
    assert any(e["unit"].endswith(":c") for e in report["features"]["digit"]) == (cell == "lstm")
    gates = {(g["layer"], g["gate"]) for g in report["gates"]}
    assert gates == {(k, g) for k in (0, 1) for g in GATES[cell]}
    for g in report["gates"]:
        assert len(g["units_left"]) == 8 and 0 <= g["left"] <= 1 and 0 <= g["right"] <= 1


def test_constant_features_have_no_units(model, tmp_path):
    path, _ = model
    (tmp_path / "flat.txt").write_text("a cat sat on a mat\n" * 5)
    result = cli("inspect", tmp_path / "flat.txt", "-c", path, "--json")
    assert result.exit_code == 0, result.stderr
    report = no_nan(result.stdout)
    assert report["features"]["digit"] == [] and report["features"]["bracket_depth"] == []
    assert set(report["constant_features"]) == {"digit", "bracket_depth", "inside_quotes", "uppercase",
                                                "indentation"}
    assert len(report["features"]["inside_word"]) == 5  # --top's default


def test_unit_off_a_terminal_is_the_text_byte_for_byte(model, corpus):
    path, cell = model
    for spec in ("1:3", "0:7:c" if cell == "lstm" else "0:7"):
        result = cli("inspect", corpus, "-c", path, "--unit", spec, "--chars", "1234")
        assert result.exit_code == 0, result.stderr
        assert result.stdout == TEXT[:1234]
        assert f"unit {spec} over 1,234 characters" in result.stderr


def test_unit_json_carries_every_characters_value(model, corpus):
    path, _ = model
    report = no_nan(cli("inspect", corpus, "-c", path, "--unit", "0:2", "--json", "--chars", "300").stdout)
    assert report["unit"] == "0:2" and report["text"] == TEXT[:300] and len(report["values"]) == 300
    assert set(report["r"]) == set(NAMES) and all(-1 <= v <= 1 for v in report["values"])  # h is tanh-bounded


@pytest.mark.parametrize("spec, why", [("2:0", "2 layer(s)"), ("0:8", "8 units"), ("1", "not a unit"),
                                       ("a:b", "not a unit"), ("0:1:x", "not a unit")])
def test_a_bad_unit_is_a_one_line_usage_error(model, corpus, spec, why):
    path, _ = model
    result = cli("inspect", corpus, "-c", path, "--unit", spec)
    assert result.exit_code == 2 and why in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_a_cell_state_of_a_gru_or_rnn_is_a_usage_error(model, corpus):
    path, cell = model
    result = cli("inspect", corpus, "-c", path, "--unit", "0:1:c")
    if cell != "lstm":
        assert result.exit_code == 2 and "no cell state" in result.stderr
    else:
        assert result.exit_code == 0


def test_a_page_that_cannot_be_written_is_one_line_and_leaves_nothing(model, corpus, tmp_path):
    path, _ = model
    for where in (tmp_path / "no" / "such" / "dir" / "p.html", tmp_path):
        result = cli("inspect", corpus, "-c", path, "--html", where, "--chars", "300")
        assert result.exit_code == 1 and "cannot write" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_stdin_unknown_characters_and_bounds(model, corpus):
    path, _ = model
    piped = cli("inspect", "-", "-c", path, "--json", input=TEXT[:400])
    assert piped.exit_code == 0 and no_nan(piped.stdout)["chars"] == 400
    odd = TEXT[:200] + "é✓" + TEXT[200:400]
    refused = cli("inspect", "-", "-c", path, input=odd)
    assert refused.exit_code == 1 and "lacks" in refused.stderr and "Traceback" not in refused.stderr
    skipped = cli("inspect", "-", "-c", path, "--unknown", "skip", "--unit", "0:0", input=odd)
    assert skipped.exit_code == 0 and skipped.stdout == TEXT[:400] and "skipped 2" in skipped.stderr
    assert cli("inspect", corpus, "-c", path, "--chars", "200001").exit_code == 2
    assert cli("inspect", corpus, "-c", path, "--chars", "0").exit_code == 2
    short = cli("inspect", "-", "-c", path, input="a")
    assert short.exit_code == 1 and "at least 2" in short.stderr


def test_unit_on_a_terminal_is_coloured_with_a_legend(model, corpus):
    from test_cli_terminal import ANSI, in_terminal

    path, _ = model
    code, shown = in_terminal(["inspect", corpus, "-c", path, "--unit", "1:0", "--chars", "300"], 100)
    assert code == 0, shown
    assert "unit 1:0, activation" in shown and "\x1b[" in shown
    assert TEXT[:40] in ANSI.sub("", shown).replace("\r\n", "\n")


@pytest.mark.parametrize("extra", [(), ("--unit", "0:1"), ("--json",)])
def test_a_closed_stdout_ends_quietly_with_0(model, corpus, extra):
    """`charrnn inspect ... | head`: the reader is gone before anything is written."""
    import os
    import subprocess
    import sys

    path, _ = model
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([sys.executable, "-m", "charrnn", "inspect", str(corpus), "-c", str(path), *extra],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert p.returncode == 0 and "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr


def test_non_finite_outputs_are_one_line_not_nan(model, corpus, tmp_path, monkeypatch):
    """A checkpoint holds only finite weights, but extreme ones can overflow: NaN never reaches the output."""
    import numpy as np

    from charrnn import model as core

    path, _ = model
    forward = core.forward

    def overflowing(*args, **kwargs):
        logits, state, cache = forward(*args, **kwargs)
        logits[-1] = np.inf
        return logits, state, cache

    monkeypatch.setattr(core, "forward", overflowing)
    for extra in ((), ("--json",), ("--html", tmp_path / "p.html")):
        result = cli("inspect", corpus, "-c", path, *extra)
        assert result.exit_code == 1 and "not finite" in result.stderr and result.stdout == ""
    assert not (tmp_path / "p.html").exists()
