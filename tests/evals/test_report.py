"""The HTML report is self-contained, escapes model output, and renders its charts in real Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bastion.errors import UsageError
from bastion.evals.records import RunRecord, TaskSummary
from bastion.evals.report import compare_runs, render_html, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _run(run_id: str, name: str, arc: float, scoring: str = "loglikelihood") -> RunRecord:
    caps = [TaskSummary("arc_easy", "capability", scoring, "acc_norm", arc, 100, arc - 0.1, arc + 0.1, 0.05,
                        0.25, 10.0, {"acc": arc, "items_per_s": 10.0}),
            TaskSummary("piqa", "capability", scoring, "acc_norm", 0.6, 100, 0.5, 0.7, 0.05, 0.5, 20.0,
                        {"items_per_s": 5.0})]
    safety = [TaskSummary("prompt_injection", "safety", "rules", "pass_rate", 0.3, 10, 0.1, 0.6, 0.1, None, 5.0,
                          {"tokens_per_s": 40.0, "cost_per_1m_tokens": 3.47})]
    return RunRecord(run_id, "2026-11-25T18:00:00+00:00", {"name": name, "kind": "llama.cpp",
                     "digest": "sha256:" + "ab" * 32}, "all", "core-1+safety-1", {"seed": 1, "limit": 100},
                     [{"name": "arc_easy", "sha256": "sha256:" + "cd" * 32, "licence": "CC-BY-SA-4.0",
                       "source": "wheel"}], caps + safety, 35.0)


def test_compare_shows_deltas_only_between_like_scores() -> None:
    comp = compare_runs([_run("r-aaaaaa", "a", 0.5), _run("r-bbbbbb", "b", 0.7),
                         _run("r-cccccc", "c", 0.9, scoring="generative")])
    arc = next(row for row in comp["tasks"] if row["task"] == "arc_easy")
    assert arc["cells"][1]["delta"] == pytest.approx(0.2)
    assert arc["cells"][2]["delta"] is None  # generative vs log-likelihood: not comparable


def test_report_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    page = render_html([_run("r-aaaaaa", "<script>alert(1)</script>", 0.5)])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page
    assert page.count("<figure class=chart") == 3
    with pytest.raises(UsageError):
        render_html([])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make venv installs it)")
def test_report_renders_its_charts_in_headless_chromium(tmp_path: Path) -> None:
    out = write_report([_run("r-aaaaaa", "smollm2", 0.5), _run("r-bbbbbb", "gemma3", 0.6)],
                       tmp_path / "report.html")
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "Bastion evaluation report" in dom, proc.stderr[-2000:]
    for chart in ("chart-capability", "chart-safety", "chart-throughput"):
        m = re.search(rf'<figure class="chart" id="{chart}">(.*?)</figure>', dom, re.S)
        assert m is not None, f"{chart} missing from the rendered DOM"
        svg = m.group(1)
        assert svg.lstrip().startswith("<svg") and svg.count("<path") > 5  # bars, axes, glyphs


def _safety_only(run_id: str) -> RunRecord:
    full = _run(run_id, "guard", 0.5)
    return RunRecord(full.id, full.created_at, full.target, "safety", "safety-1", {"seed": 3, "limit": None,
                     "tasks": ["a", "b"]}, [], [s for s in full.summaries if s.kind == "safety"], 5.0)


def test_each_run_has_its_own_colour_and_legends_skip_runs_without_bars() -> None:
    from bastion.evals.report import PALETTE, _bar_chart, run_colour

    assert len({run_colour(i) for i in range(12)}) == 12
    runs = [_run("r-aaaaaa", "smollm2", 0.5), _safety_only("r-bbbbbb"), _run("r-cccccc", "gemma3", 0.7)]
    capability = _bar_chart(runs, "capability", "Capability", "score")
    assert capability is not None
    assert "guard (bbbbbb)" not in capability  # the safety-only run has no capability bar, so no legend entry
    assert "smollm2 (aaaaaa)" in capability and "gemma3 (cccccc)" in capability
    assert PALETTE[0].lower() in capability.lower() and PALETTE[2].lower() in capability.lower()
    assert PALETTE[1].lower() not in capability.lower()  # run 1's colour stays run 1's, even when absent
    safety = _bar_chart(runs, "safety", "Safety", "score")
    assert safety is not None and PALETTE[1].lower() in safety.lower()


def test_settings_are_readable_and_tables_cannot_overflow_the_page() -> None:
    page = render_html([_safety_only("r-bbbbbb")])
    assert "seed: 3<br>tasks: a, b" in page and "limit" not in page.split("<h2>Scores")[0].split("<h2>Runs")[1]
    assert "overflow-x:auto" in page and "overflow-wrap:anywhere" in page


def test_the_policy_cost_headline_gives_intervals_and_says_when_the_gap_is_noise() -> None:
    from bastion.evals.report import _cost_sentence
    from bastion.evals.scoring import wilson_interval

    def cap(correct: int, n: int) -> tuple[float, float, float, int]:
        return (correct / n, *wilson_interval(correct, n), n)

    noisy = _cost_sentence("enterprise", cap(8, 20), cap(13, 20))  # the n=20 "costs you 25 points" case
    assert "40.0% [" in noisy and "n=20]" in noisy and "costs you 25.0 points" in noisy
    assert "within noise" in noisy
    clear = _cost_sentence("enterprise", cap(400, 1000), cap(650, 1000))
    assert "costs you 25.0 points" in clear and "within noise" not in clear
    ahead = _cost_sentence("enterprise", cap(700, 1000), cap(400, 1000))
    assert "no cost" in ahead
