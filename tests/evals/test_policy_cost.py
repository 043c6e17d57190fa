"""'What your policy costs you': real bundled models identified, decided by Cedar, plotted in the report."""

from __future__ import annotations

from pathlib import Path

from bastion import bundled
from bastion.evals.policy_cost import admissibility
from bastion.evals.records import RunRecord, TaskSummary
from bastion.evals.report import render_html
from bastion.policy import Organisation


def run(run_id: str, path: Path | None, name: str, arc: float) -> RunRecord:
    detail = {"path": str(path)} if path else {}
    caps = [TaskSummary("arc_easy", "capability", "loglikelihood", "acc_norm", arc, 100, arc - 0.1, arc + 0.1,
                        0.05, 0.25, 10.0, {"items_per_s": 10.0})]
    return RunRecord(run_id, "2026-11-25T18:00:00+00:00", {"name": name, "kind": "llama.cpp", "digest": None,
                     "detail": detail}, "core", "core-1", {"seed": 1}, [], caps, 10.0)


def test_the_report_states_what_the_policy_costs_on_the_real_bundled_models() -> None:
    runs = [run("r-smol01", bundled.smollm2(), "smollm2", 0.40), run("r-gemma1", bundled.gemma3(), "gemma3", 0.47),
            run("r-remote", None, "remote", 0.9)]
    verdicts = admissibility(runs, "enterprise", Organisation(("CN",), ("org",)))
    by_run = {v.run_id: v for v in verdicts}
    assert by_run["r-smol01"].identity == "SmolLM2-135M-Instruct" and by_run["r-smol01"].allowed is True
    assert by_run["r-gemma1"].identity == "Gemma 3 270M" and by_run["r-gemma1"].allowed is False  # Gemma terms
    assert by_run["r-remote"].allowed is None  # an HTTP target with nothing to identify
    page = render_html(runs, verdicts)
    assert "id=chart-policy" in page
    assert "your policy costs you 7.0 points" in page


def test_an_operator_can_name_a_remote_runs_model() -> None:
    verdicts = admissibility([run("20261125-remote", None, "remote", 0.9)], "sovereign-strict",
                             Organisation(("CN",), ("org",)), {"remote": "DeepSeek-R1-Distill-Llama-8B"})
    assert verdicts[0].allowed is False
    assert "sovereign.denied-country-in-lineage" in verdicts[0].reasons


def test_the_policy_cost_uses_the_corrected_k_exaone_licence() -> None:
    # K-EXAONE LICENSE §2.1 grants commercial use (issue 17): a policy that forbids non-commercial
    # licences must not refuse it any more.
    verdicts = admissibility([run("20261130-kex", None, "remote", 0.9)], "sovereign-strict",
                             Organisation(("CN",), ("org",)), {"kex": "K-EXAONE 236B-A23B"})
    assert verdicts[0].identity == "K-EXAONE 236B-A23B"
    assert verdicts[0].allowed is True, verdicts[0].reasons
