"""The HTML report: every section from json_report.py's dict, escaping, nothing loaded from the network, the Pareto
front, reports with fields missing, and the page as headless Chromium draws it."""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import struct
import subprocess
from html import escape, unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import sentiment_test
from pytest_llmtune.report.html_page import STYLE, render
from pytest_llmtune.report.svg_plot import Point, label_width, overlap, pareto_front, plot, ticks

ANSWER = 'positive <script>alert("pwned")</script> & \'quoted\'\nsecond line'
MISS = "assert \"<b>negative</b>\" == 'positive'"
PROMPT_A = "Examples:\nReview: Great fun -> positive\nReview: A waste of time -> negative\nReview: {review} ->"
PROMPT_B = "Review: {review}\nSentiment (positive or negative):"
IDS = ["case0", "case1", "case2", "case3"]
HEADER: dict[str, Any] = {
    "llmtune_report": 1, "created": "2026-11-23T11:18:56+00:00", "endpoint": "http://127.0.0.1:8080/v1",
    "versions": {"python": "3.11.7", "pytest-llmtune": "0.1.0", "pytest": "9.2.0", "vcrpy": None},
    "prices": {"built_in_date": "2025-08-07", "overrides": {}},
    "settings": {"concurrency": 8, "num_samples": 16, "eta": 3, "strategy": "halving"},
}


def results(ids: list[str], misses: set[str], answer: str = "positive") -> dict[str, Any]:
    return {i: {"metric": 0.0 if i in misses else 1.0, "miss": MISS if i in misses else None, "answer": answer}
            for i in ids}


def config(number: int, prompt: str, temperature: float, score: float | None, cost: float,
           found: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One config of a tune report, as export.config_json writes it."""
    low, high = (max(score - 0.3, 0.0), min(score + 0.3, 1.0)) if score is not None else (0, 0)
    return {"number": number, "config": {"model": "gpt-4o-mini", "prompt": prompt, "temperature": temperature},
            "rung": 2, "instances": len(found), "score": score, "interval": [low, high] if found else None,
            "tokens": 20 * len(found), "cost_usd": cost * len(found), "tokens_per_instance": 20.0,
            "cost_usd_per_instance": cost, "dropped": None, "results": found, "held_out": None, **fields}


def tune_target() -> dict[str, Any]:
    """#2 wins; #0 and #3 share a point that #2 dominates; #1 ran one rung, cheaper; #4 was dropped unscored."""
    held = {"instances": 1, "score": 1.0, "interval": [0.025, 1.0], "tokens": 20, "cost_usd": 4e-6, "error": None,
            "results": results(["held0"], set())}
    configs = [config(0, PROMPT_A, 0.3, 0.5, 4e-6, results(IDS, {"case0", "case1"})),
               config(1, PROMPT_B, 0.9, 0.5, 2e-6, results(IDS[:2], {"case1"}), rung=1),
               config(2, PROMPT_A, 0.0, 1.0, 4e-6, results(IDS, set(), ANSWER), held_out=held),
               config(3, PROMPT_B, 0.5, 0.5, 4e-6, results(IDS, {"case2", "case3"})),
               config(4, PROMPT_B, 0.7, None, 0.0, {}, rung=0, dropped="error: RateLimitError: slow down")]
    return {"metric": "pass_rate", "mode": "max", "agg": "mean", "threshold": 0.5,
            "verdict": {"outcome": "passed", "message": "locked pass_rate 1.000 [95% CI 0.51, 1.00] on 4 instances"},
            "instances": {"tuning": IDS, "held_out": ["held0"]},
            "budgets": {"optimization": {"amount": 1.0, "unit": "usd", "spent": 0.0002}, "inference": None},
            "spending": {"requests": 18, "tokens": 360, "cost_usd": 0.0001, "replayed": 0, "replayed_tokens": 0,
                         "replayed_cost_usd": 0.0, "seconds": 1.5},
            "plan": {"rungs": [{"configs": 5, "instances": 2}, {"configs": 3, "instances": 4}], "configs_drawn": 5,
                     "skipped_before_any_request": []},
            "configs": configs, "ranking": [2, 0, 3, 1], "winner": 2, "confirmation": None,
            "locked": {"config": configs[2]["config"], "score": 1.0, "interval": [0.51, 1.0], "instances": 4},
            "stopped": None, "error": None}


def tune_report() -> dict[str, Any]:
    return {**HEADER, "kind": "tune", "targets": {"tests/test_sentiment.py::test_sentiment": tune_target()}}


def gate_report() -> dict[str, Any]:
    verdict = {"outcome": "failed", "message": "pass_rate 0.500 < threshold 0.8 <i>", "metric": "pass_rate",
               "score": 0.5, "interval": "0.15 0.85", "locked_score": 1.0, "p_value": 0.031}
    instances = {"case0": {"outcome": "passed", "nodeid": "t.py::test_s[case0]", "score": 1.0, "answer": "positive",
                           "tokens": 20, "cost_usd": 4e-6},
                 "case1": {"outcome": "missed", "nodeid": "t.py::test_s[case1]", "score": 0.0, "miss": MISS,
                           "answer": ANSWER, "tokens": 21, "cost_usd": 4.2e-6}}
    return {**HEADER, "kind": "gate", "endpoint": None,
            "targets": {"t.py::test_s": {"verdict": verdict, "instances": instances}}}


class Page(HTMLParser):
    """What a browser would see of a page: its tags with their attributes, and its tables as text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[dict[str, Any]] = []
        self.cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append({"class": dict(attrs).get("class"), "headers": [], "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self.cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append(" ".join(" ".join(self.cell).split()))
            self.cell = None

    def table(self, cls: str | None = None) -> list[list[str]]:
        """The rows (headers first) of the first table of class `cls`."""
        return next(table["rows"] for table in self.tables if cls is None or table["class"] == cls)


def test_a_tune_page_has_the_header_the_verdict_the_lock_the_leaderboard_the_plot_and_the_answers() -> None:
    html = render(tune_report())
    for text in ("<h1>pytest-llmtune tune report</h1>", "2026-11-23T11:18:56+00:00", "http://127.0.0.1:8080/v1",
                 "built-in table of 2025-08-07", "python 3.11.7, pytest-llmtune 0.1.0, pytest 9.2.0",
                 "tests/test_sentiment.py::test_sentiment", '<span class="badge passed">passed</span>',
                 "locked pass_rate 1.000", "Locked config", "Leaderboard", "order: configs that reached a later rung",
                 "1 configs drawn but not evaluated", "Long values in full", "Score against cost", "<svg",
                 "Answers of the top 4 configs", "5 configs drawn; rungs (configs x instances): 5 x 2, then 3 x 4",
                 "optimization $1.0000 ($0.00020 spent)"):  # two significant digits below $0.001
        assert text in html
    assert "vcrpy" not in html  # versions of packages not installed are left out


def test_the_plan_names_every_bracket_and_budgets_read_as_in_the_terminal() -> None:
    report = tune_report()
    target = report["targets"]["tests/test_sentiment.py::test_sentiment"]
    target["plan"]["brackets"] = [[{"configs": 16, "instances": 8}, {"configs": 6, "instances": 24}],
                                  [{"configs": 12, "instances": 8}, {"configs": 4, "instances": 24}]]
    target["plan"]["configs_drawn"] = 28
    target["budgets"] = {"optimization": {"amount": 20000.0, "unit": "tokens", "spent": 19580.4},
                         "inference": {"amount": 0.01, "unit": "usd", "spent": None}}

    html = render(report)

    assert ("28 configs drawn in 2 brackets; rungs (configs x instances): bracket 1: 16 x 8, then 6 x 24 | "
            "bracket 2: 12 x 8, then 4 x 24") in html
    assert "optimization 20,000 tokens (19,580 spent); inference $0.0100 per instance" in html


def test_the_leaderboard_shows_the_settings_that_differ_with_long_values_as_labels() -> None:
    page = Page(render(tune_report()))
    rows = page.table("leaderboard")
    assert rows[0] == ["rank", "#", "prompt", "temperature", "instances", "score [95% CI]", "held-out [95% CI]",
                       "tokens/inst", "$/inst"]  # the model is the same in every config; nothing dropped was ranked
    assert [row[1] for row in rows[1:]] == ["2", "0", "3", "1"]
    assert rows[1][2:7] == ["prompt #1", "0", "4", "1.000 [0.70, 1.00]", "1.000 [0.03, 1.00]"]
    assert rows[3][2] == "prompt #2"
    assert "<dt>prompt #1</dt><dd><pre>Examples:\nReview: Great fun -&gt; positive" in render(tune_report())


def test_the_answers_of_the_top_configs_stand_side_by_side_with_misses_marked() -> None:
    html = render(tune_report())
    rows = Page(html).table("answers")
    assert rows[0] == ["instance", "#2 winner · 1.000", "#0 · 0.500", "#3 · 0.500", "#1 · 0.500"]
    assert rows[1][:3] == ["case0", ANSWER.splitlines()[0], "positive " + MISS]
    assert rows[3][4] == "not run"  # #1 stopped at the first rung, on two instances
    assert rows[-1] == ["held0 held out", "positive", "not run", "not run", "not run"]
    assert html.count('class="miss"') == 5
    assert f'title="{escape(MISS)}"' in html  # the miss reason as a tooltip too


def test_a_cell_of_n_samples_shows_each_distinct_answer_with_its_count() -> None:
    report = tune_report()
    winner = report["targets"]["tests/test_sentiment.py::test_sentiment"]["configs"][2]
    winner["results"]["case0"]["answers"] = ["1919", "1919", "The year mentioned in this sentence is 19"]

    html = render(report)

    cell = html[html.index("3 answers"):]
    cell = cell[: cell.index("</td>")]
    assert cell.index("1919 <b>×2</b>") < cell.index("The year mentioned in this sentence is 19 <b>×1</b>")


@pytest.mark.parametrize("report", [tune_report, gate_report])
def test_text_from_the_model_is_escaped(report: Any) -> None:
    html = render(report())
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    assert "positive &lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;" in html
    assert "second line" not in html  # the first answer line only


@pytest.mark.parametrize("report", [tune_report, gate_report])
def test_the_page_loads_nothing(report: Any) -> None:
    html = render(report())
    page = Page(html)
    assert not {tag for tag, _ in page.tags} & {"script", "link", "img", "iframe", "object", "embed", "base"}
    assert not [value for _, attrs in page.tags for value in attrs.values() if value and "://" in value]
    assert "url(" not in html and "@import" not in html


def test_the_plot_rings_the_pareto_front_and_marks_the_winner() -> None:
    html = render(tune_report())
    svg = html[html.index("<svg"): html.index("</svg>")]
    assert svg.count('class="ring"') == 2  # #1 and #2; #0 and #3 cost as much as #2 and score less
    assert svg.count("<polyline") == 1
    assert '<g class="mark winner">' in svg and ">#2 winner</text>" in svg
    assert ">#0, 3</text>" in svg  # configs at the same point share a mark
    assert ">cost per instance ($)</text>" in svg and ">pass_rate</text>" in svg


def test_the_plot_is_by_tokens_when_nothing_cost_anything() -> None:
    report = tune_report()
    for config in report["targets"]["tests/test_sentiment.py::test_sentiment"]["configs"]:
        config["cost_usd"] = config["cost_usd_per_instance"] = 0.0
    html = render(report)
    assert ">tokens per instance</text>" in html
    assert "$/inst" not in html


def test_pareto_front_on_hand_made_points() -> None:
    points = [Point(0, 1.0, 0.5), Point(1, 2.0, 0.8), Point(2, 2.0, 0.6), Point(3, 3.0, 0.7), Point(4, 0.5, 0.2),
              Point(5, 4.0, 0.9), Point(6, 2.0, 0.8), Point(7, 1.0000000000000002, 0.5), Point(8, 4.0, 0.9 - 1e-16),
              Point(9, 5.0, 0.9)]
    assert [p.number for p in pareto_front(points)] == [4, 0, 7, 1, 6, 5, 8]
    assert [p.number for p in pareto_front(points, maximize=False)] == [4]
    assert pareto_front([]) == []


def test_ticks_are_round_values_inside_the_range() -> None:
    assert ticks(-0.06, 1.06) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert ticks(1.5e-6, 4.5e-6) == [1.5e-6, 2e-6, 2.5e-6, 3e-6, 3.5e-6, 4e-6, 4.5e-6]


def test_a_failed_tune_renders_its_error() -> None:
    target: dict[str, Any] = {
        "metric": "pass_rate", "mode": "max", "agg": "mean", "threshold": None,
        "verdict": {"outcome": "failed", "message": "the search failed: every config raised"},
        "instances": {"tuning": IDS, "held_out": []}, "budgets": None, "spending": None, "plan": None,
        "configs": [], "ranking": [], "winner": None, "confirmation": None, "locked": None, "stopped": None,
        "error": "SearchFailed: every config raised <ValueError>"}
    html = render({**HEADER, "kind": "tune", "targets": {"t.py::test_s": target}})
    assert '<pre class="error">SearchFailed: every config raised &lt;ValueError&gt;</pre>' in html
    assert "No config was scored." in html and "Nothing was locked." in html
    assert "<svg" not in html and "Answers of" not in html


def without(data: dict[str, Any], path: tuple[str | int, ...], key: str, missing: bool) -> dict[str, Any]:
    """A copy of `data` where `key` of the mapping at `path` is None, or missing."""
    changed = copy.deepcopy(data)
    holder: Any = changed
    for step in path:
        holder = holder[step]
    if missing:
        del holder[key]
    else:
        holder[key] = None
    return changed


def places(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every (path, key) of every mapping in `data`."""
    if isinstance(data, list):
        return [found for index, item in enumerate(data) for found in places(item, (*path, index))]
    if not isinstance(data, dict):
        return []
    return [((path), key) for key in data] + [found for key, value in data.items()
                                              for found in places(value, (*path, key))]


@pytest.mark.parametrize("report", [tune_report, gate_report])
@pytest.mark.parametrize("missing", [False, True], ids=["none", "missing"])
def test_any_field_none_or_missing_still_renders(report: Any, missing: bool) -> None:
    data = report()
    for path, key in places(data):
        html = render(without(data, path, key, missing))
        assert html.endswith("</body></html>\n"), (path, key)


def test_a_gate_page_has_each_verdict_and_its_instances() -> None:
    html = render(gate_report())
    page = Page(html)
    assert "<h1>pytest-llmtune gate report</h1>" in html and "<dd>none</dd>" in html  # no endpoint: offline
    assert '<span class="badge failed">failed</span>' in html and "threshold 0.8 &lt;i&gt;" in html
    assert "<dt>interval</dt><dd>[0.150, 0.850]</dd>" in html and "<dt>p_value</dt><dd>0.031</dd>" in html
    rows = page.table("instances")
    assert rows[0] == ["instance", "outcome", "score", "answer", "miss", "tokens", "$"]
    assert rows[2] == ["case1", "missed", "0", ANSWER.splitlines()[0], MISS, "21", "4.2e-06"]
    assert '<tr class="missed">' in html


def test_a_live_gate_and_a_report_without_targets_render() -> None:
    assert "<h1>pytest-llmtune gate live report</h1>" in render({**gate_report(), "kind": "gate live"})
    assert "No target was tuned or gated." in render({"kind": "tune"})
    assert "<h1>pytest-llmtune report</h1>" in render({})


def test_a_tune_and_its_gate_write_the_page_beside_the_data(pytester: pytest.Pytester,
                                                            openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    for mode, name in (("--llm-tune", "tune"), ("--llm-test", "gate")):
        result = pytester.runpytest(mode, "--llm-report", f"{name}.json", "--llm-report", f"{name}.html")
        assert result.ret == pytest.ExitCode.OK
        result.stdout.fnmatch_lines([f"report written to {pytester.path / name}.html"])
        page = (pytester.path / f"{name}.html").read_text(encoding="utf-8")
        assert page == render(json.loads((pytester.path / f"{name}.json").read_text(encoding="utf-8")))
        assert f"<h1>pytest-llmtune {name} report</h1>" in page and "test_sentiment.py::test_sentiment" in page


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_headless_chromium_draws_the_page(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(tune_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    browse = [str(BROWSER), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*browse, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1280, 2000)
    assert len(png) > 40_000  # a blank page of that size is about 12 KB
    dom = subprocess.run([*browse, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert dom.count('<g class="mark') == 3 and "<script" not in dom  # the model's <script> stayed text


def crowded(seed: int, count: int = 40) -> list[Point]:
    """Configs bunched at a few costs and scores, as a tune's are: labels that a naive layout would pile up."""
    draw = random.Random(seed)
    points = []
    for number in range(count):
        x = draw.choice([1.0, 1.05, 1.1, 2.0, 2.02, 4.0]) * (1 + draw.random() * 0.01)
        y = round(draw.choice([0.2, 0.5, 0.52, 0.55, 0.9]) + draw.random() * 0.02, 3)
        points.append(Point(number, x, y, max(y - 0.2, 0.0), min(y + 0.2, 1.0)))
    return points


LABEL = re.compile(r'<text class="label" x="([\d.]+)" y="([\d.]+)">([^<]*)</text>')
DOT_AT = re.compile(r'<circle class="dot" cx="([\d.]+)" cy="([\d.]+)"')


@pytest.mark.parametrize("seed", range(12))
def test_labels_never_overlap_each_other_or_another_marks_dot(seed: int) -> None:
    svg = plot(crowded(seed), winner=seed, maximize=True, x_label="cost", y_label="score")

    boxes = [(float(x), float(y) - 11, float(x) + label_width(unescape(text)), float(y) + 3)
             for x, y, text in LABEL.findall(svg)]
    dots = [(float(x), float(y)) for x, y in DOT_AT.findall(svg)]
    assert len(dots) == svg.count('<g class="mark')
    for i, a in enumerate(boxes):
        assert not any(overlap(a, b) for b in boxes[i + 1:]), (seed, a)
        assert sum(overlap(a, (x - 4.5, y - 4.5, x + 4.5, y + 4.5)) for x, y in dots) == 0, (seed, a)
    labelled = {text for *_, text in LABEL.findall(svg)}
    assert any(text.endswith(" winner") for text in labelled)  # the winner's label is placed first
    left_out = re.search(r"no room to label ([^<]*) \(a mark", svg)
    named = len(labelled) + (len(left_out.group(1).split("; ")) if left_out else 0)
    assert named == len(dots)  # every mark is labelled, or named under the plot


@pytest.mark.skipif(BROWSER is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_labels_as_chromium_lays_them_out_do_not_overlap(tmp_path: Path) -> None:
    """The layout's text widths are upper bounds of the drawn ones: the boxes Chromium measures do not overlap."""
    svgs = [plot(crowded(seed), winner=seed, maximize=True, x_label="cost", y_label="score") for seed in range(4)]
    measure = """<script>
const out = [...document.querySelectorAll("svg")].map(svg => [...svg.querySelectorAll("text.label")].map(t => {
  const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; }));
document.body.setAttribute("data-boxes", JSON.stringify(out));
</script>"""
    page = tmp_path / "labels.html"
    style = STYLE[STYLE.index(".plot text"):]
    page.write_text(f"<!doctype html><style>body {{ font: 14px system-ui, sans-serif; }} {style}</style>"
                    f"{''.join(svgs)}{measure}", encoding="utf-8")
    dom = subprocess.run([str(BROWSER), "--headless", "--disable-gpu", "--no-sandbox",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'data-boxes="([^"]*)"', dom)
    assert found, dom[:500]
    drawn = json.loads(unescape(found.group(1)))
    assert len(drawn) == 4 and all(drawn)
    for seed, (svg, boxes) in enumerate(zip(svgs, drawn, strict=True)):
        for (_, _, text), box in zip(LABEL.findall(svg), boxes, strict=True):  # the layout's width bounds the drawn
            assert box[2] - box[0] <= label_width(unescape(text)) + 0.5, (seed, text, box)
        for i, a in enumerate(boxes):
            assert not any(overlap(tuple(a), tuple(b)) for b in boxes[i + 1:]), (seed, a)
