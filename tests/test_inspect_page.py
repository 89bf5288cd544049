"""`charrnn inspect --html`: the page is one self-contained, bounded file that carries hostile text safely, and in
a real browser (headless Chromium over the DevTools protocol, tests/cdp.py) it renders the text, recolours it
when a unit is picked (the picker, the keys, the URL fragment) and shows the model's guesses on hover. The
browser tests are skipped, with the reason, where Chromium is absent."""

import json
import re

import pytest
from typer.testing import CliRunner

import cdp
from charrnn.cli import app
from charrnn.config import ModelConfig
from charrnn import probe
from charrnn.probe import page

HOSTILE = 'x</script><script>alert(1)</script><!-- & &amp; \u2028\u2029 "q" \U0001F600 \\u003c'
TEXT = (f"def f(a, b):\n    return [a, (b + 1)]  # it's\n{HOSTILE}\nTHE cat sat on 42 mats.\n") * 12


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A tiny LSTM trained on TEXT, and two pages of it: every unit whole, and one squeezed by a small budget."""
    tmp = tmp_path_factory.mktemp("page")
    (tmp / "text.txt").write_text(TEXT)
    model = tmp / "m.npz"
    result = cli("train", tmp / "text.txt", "-o", model, "--hidden", "8", "--layers", "2", "--embed", "4",
                 "--batch", "4", "--seq", "16", "--steps", "10", "--seed", "1", "--eval-every", "5")
    assert result.exit_code == 0, result.stderr
    result = cli("inspect", tmp / "text.txt", "-c", model, "--html", tmp / "page.html", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["chars"] == len(TEXT) and "wrote" in result.stderr
    with pytest.MonkeyPatch.context() as mp:  # room for 3 whole units and a few dozen characters of every unit
        fixed = page.RESERVE + len(page._json(TEXT)) + page._b64(2 * len(TEXT)) + 2 * page._b64(len(TEXT) * 10)
        per_unit = page._b64((len(TEXT) + 1) // 2)
        assert per_unit > 900
        mp.setattr(page, "BUDGET", fixed + 3 * per_unit + 900)

        def no_second_pass(*args):
            raise AssertionError("a second pass over the text, though every unit was kept")

        with pytest.MonkeyPatch.context() as once:
            once.setattr(probe, "record", no_second_pass)
            result = cli("inspect", tmp / "text.txt", "-c", model, "--html", tmp / "small.html")
        assert result.exit_code == 0, result.stderr
        mp.setattr(page, "KEEP_ALL", 0)  # the ranked units from a second pass over the text
        result = cli("inspect", tmp / "text.txt", "-c", model, "--html", tmp / "second.html")
    assert result.exit_code == 0, result.stderr
    return tmp


def blob(html: str) -> str:
    return re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1)


def test_the_page_is_self_contained_and_carries_the_text_safely(pages):
    html = (pages / "page.html").read_text(encoding="utf-8")
    assert html.isascii()  # every character of the text is a \u escape in the JSON
    assert "Content-Security-Policy" in html and "default-src 'none'" in html  # nothing may be fetched
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", html)
    data = blob(html)
    assert "</" not in data and "<" not in data and "\u2028" not in data and "&" not in data
    d = json.loads(data)
    assert d["text"] == TEXT and d["chars"] == len(TEXT)
    assert len(d["ranked"]) > 0 and set(d["features"]) >= {"position_in_line", "bracket_depth"}
    assert d["acts"]["head"]["chars"] == len(TEXT) and d["acts"]["whole"] == {}  # small enough: every unit whole
    assert [h["step"] for h in d["history"]][-1] == 10 and any("val_loss" in h for h in d["history"])
    assert {(g["layer"], g["gate"]) for g in d["gates"]} == {(k, g) for k in (0, 1) for g in "ifo"}


def test_a_page_over_budget_keeps_the_ranked_units_whole_and_every_unit_for_the_first_characters(pages):
    d = json.loads(blob((pages / "small.html").read_text()))
    whole, head = d["acts"]["whole"], d["acts"]["head"]
    assert len(whole) == 3 and list(whole) == [e["unit"] for e in d["ranked"][:3]]
    assert 0 < head["chars"] < len(TEXT) and len(head["scales"]) == 32


def test_the_ranked_units_are_the_same_from_memory_and_from_a_second_pass(pages):
    import base64

    import numpy as np

    one, two = (json.loads(blob((pages / name).read_text()))["acts"] for name in ("small.html", "second.html"))
    assert one["head"] == two["head"] and list(one["whole"]) == list(two["whole"])
    for unit, a in one["whole"].items():
        b = two["whole"][unit]
        assert a["scale"] == pytest.approx(b["scale"], rel=1e-3)  # float16 in memory, float32 from the pass
        qa, qb = (np.frombuffer(base64.b64decode(x["data"]), np.uint8) for x in (a, b))
        assert (qa != qb).mean() < 0.02  # a level apart where float16 rounding crosses a boundary, rarely


def test_the_plan_fits_the_budget_for_a_2x512_lstm():
    text = "To be, or not to be, that is the question:\n" * 466  # 20,038 characters
    mc = ModelConfig("lstm", 65, 64, 512, 2)
    p = page.plan(mc, text)
    per_unit = page._b64((len(text) + 1) // 2)
    size = (page.RESERVE + len(page._json(text)) + page._b64(2 * len(text)) + 2 * page._b64(len(text) * 10)
            + p.whole * per_unit + page._b64(2048 * ((p.head + 1) // 2)))
    assert p.whole == 45 and 1000 < p.head < len(text) and size <= page.BUDGET <= 5_000_000
    assert p.keep == len(text)  # 20,000 x 2,048 float16, 82 MB: kept in memory, no second pass
    big = page.plan(ModelConfig("lstm", 65, 64, 1024, 2), text)
    assert big.keep == big.head < len(text)  # 164 MB is over KEEP_ALL: the ranked units take a second pass


def test_quantise_and_pack():
    import numpy as np

    scale, q = page.quantise(np.array([-2.0, -1.0, 0.0, 0.14, 2.0]))
    assert scale == 2.0 and q.tolist() == [1, 4, 8, 8, 15]
    assert page.pack(q).tolist() == [0x14, 0x88, 0xF0]
    assert page.quantise(np.zeros(3))[0] == 1.0


@pytest.fixture(scope="module")
def browser():
    try:
        with cdp.Browser() as b:
            yield b
    except cdp.Unavailable as e:
        pytest.skip(f"no browser test: {e}")


COLOURS = "Array.from(document.querySelectorAll('#text span'), s => s.style.backgroundColor + '/' + s.className)"


def test_the_page_renders_and_the_fragment_picks_a_unit(pages, browser):
    url = (pages / "page.html").as_uri()
    browser.open(url + "#unit=0:3")
    assert browser.js("document.body.dataset.ready") == "1" and browser.errors() == []
    assert browser.js("document.body.dataset.unit") == "0:3"
    assert browser.js("document.getElementById('text').textContent") == TEXT  # hostile text as text, no script ran
    assert browser.js("document.querySelectorAll('script').length") == 2
    assert browser.js("document.getElementById('picker').value") == "0:3"
    unit_colours = browser.js(COLOURS)
    assert len(unit_colours) == len(list(TEXT)) and len(set(unit_colours)) > 3
    browser.open(url + "#unit=1:2:c")
    assert browser.js("document.body.dataset.unit") == "1:2:c" and browser.js(COLOURS) != unit_colours
    browser.open(url)
    surprisal = browser.js(COLOURS)
    assert browser.js("document.body.dataset.unit") == "surprisal" and surprisal != unit_colours
    browser.js("location.hash = '#unit=0:3'")
    browser.js("new Promise(r => setTimeout(r, 50))")  # hashchange is dispatched asynchronously
    assert browser.js("document.body.dataset.unit") == "0:3" and browser.js(COLOURS) == unit_colours


def test_picking_and_stepping_recolour_the_text(pages, browser):
    browser.open((pages / "page.html").as_uri())
    before = browser.js(COLOURS)
    browser.js("(p => { p.value = '1:5'; p.dispatchEvent(new Event('change')); })(document.getElementById('picker'))")
    assert browser.js("document.body.dataset.unit") == "1:5" and browser.js("location.hash") == "#unit=1:5"
    picked = browser.js(COLOURS)
    assert picked != before
    first_ranked = browser.js("document.querySelector('#picker optgroup option').value")
    browser.js("document.getElementById('picker').selectedIndex = 0")
    browser.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'j'}))")
    assert browser.js("document.body.dataset.unit") == first_ranked
    browser.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 's'}))")
    assert browser.js("document.body.dataset.unit") == "surprisal" and browser.js(COLOURS) == before
    browser.js("document.getElementById('next').click()")
    assert browser.js("document.body.dataset.unit") == first_ranked


def test_hovering_a_character_shows_the_models_guesses(pages, browser):
    browser.open((pages / "page.html").as_uri() + "#unit=0:1")
    tip = browser.js("(s => { s.dispatchEvent(new MouseEvent('mouseover', {bubbles: true, clientX: 20, clientY: 20}));"
                     " return document.getElementById('tip').textContent; })(document.querySelectorAll('#text span')[5])")
    assert f"'{TEXT[5]}'" in tip and "bits" in tip and "the model expected:" in tip and "unit 0:1:" in tip
    assert len(re.findall(r"\d+\.\d%", tip)) == 5


def test_a_squeezed_page_says_which_characters_a_unit_covers(pages, browser):
    url = (pages / "small.html").as_uri()
    browser.open(url + "#unit=1:7:c")
    unit = browser.js("document.body.dataset.unit")
    nodata = browser.js("document.querySelectorAll('#text span.nodata').length")
    if unit == "1:7:c" and nodata:
        assert "first" in browser.js("document.getElementById('note').textContent")
    ranked = json.loads(blob((pages / "small.html").read_text()))["ranked"][0]["unit"]
    browser.open(f"{url}#unit={ranked}")
    assert browser.js("document.body.dataset.unit") == ranked
    assert browser.js("document.querySelectorAll('#text span.nodata').length") == 0
    browser.open(url + "#unit=7:0")
    assert browser.js("document.body.dataset.unit") == "surprisal"
    assert "no unit 7:0" in browser.js("document.getElementById('note').textContent")


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_pages_of_a_gru_and_an_rnn_work(cell, pages, browser):
    model, out = pages / f"{cell}.npz", pages / f"{cell}.html"
    result = cli("train", pages / "text.txt", "-o", model, "--cell", cell, "--hidden", "6", "--layers", "1",
                 "--embed", "4", "--batch", "4", "--seq", "16", "--steps", "3", "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert cli("inspect", pages / "text.txt", "-c", model, "--html", out).exit_code == 0
    browser.open(out.as_uri() + "#unit=0:5")
    assert browser.js("document.body.dataset.ready") == "1" and browser.js("document.body.dataset.unit") == "0:5"
    assert len(set(browser.js(COLOURS))) > 2
    circles = browser.js("document.querySelectorAll('#gates circle').length")
    assert circles == (12 if cell == "gru" else 0)  # r and z of 6 units; an RNN has no gates
    browser.open(out.as_uri() + "#unit=0:5:c")
    assert browser.js("document.body.dataset.unit") == "surprisal"  # no cell state: the note says so
    assert "no unit 0:5:c" in browser.js("document.getElementById('note').textContent")
    assert browser.errors() == []


def test_a_page_shows_at_most_page_chars_characters(pages, browser, monkeypatch):
    monkeypatch.setattr(page, "PAGE_CHARS", 500)
    out = pages / "head.html"
    result = cli("inspect", pages / "text.txt", "-c", pages / "m.npz", "--html", out, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["chars"] == len(TEXT)
    d = json.loads(blob(out.read_text()))
    assert d["chars"] == 500 and d["inspected"] == len(TEXT) and d["text"] == TEXT[:500]
    assert d["acts"]["head"]["chars"] == 500
    browser.open(out.as_uri() + "#unit=1:1")
    assert browser.js("document.querySelectorAll('#text span').length") == len(list(TEXT[:500]))
    assert browser.js("document.getElementById('about').textContent").startswith(f"the first 500 of {len(TEXT):,}")
    assert browser.errors() == []
