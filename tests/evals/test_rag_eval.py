"""``eval run --rag``: SciQ with and without retrieval, on the real SmolLM2 and a real collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.config import AuditSettings, RagSettings, Settings
from bastion.evals import LlamaBackend
from bastion.evals.rag_eval import context, load_sciq, retrieval_summary, run_rag_eval, write_passages
from bastion.keys import Principal
from bastion.rag import RagStore

READER = Principal("eval", "eval", (), ("everyone",))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RagStore:
    home = tmp_path_factory.mktemp("rag-eval")
    settings = Settings(rag=RagSettings(path=home / "rag.db"), audit=AuditSettings(enabled=False))
    rag = RagStore.open(settings)
    rag.create_collection("sciq-sample")
    # the support passages of the sampled questions, and of as many others, so retrieval has to choose
    items, _ = load_sciq(12, 7)
    folder = home / "passages"
    folder.mkdir()
    for item in items:
        if item.support:
            (folder / f"{item.id}.txt").write_text(item.support, encoding="utf-8")
    (folder / "folder.meta.toml").write_text('classification = "public"\ngroups = ["everyone"]\n')
    report = rag.ingest("sciq-sample", folder)
    assert not report.failed
    return rag


def test_the_same_questions_with_and_without_retrieval_give_two_scores_and_their_difference(
    store: RagStore, smol: LlamaBackend
) -> None:
    run, items = run_rag_eval(
        smol, lambda q: store.search(["sciq-sample"], q, principal=READER, k=2), "sciq-sample",
        limit=6, seed=7, k=2,
    )
    closed, grounded = run.summaries
    assert (closed.task, grounded.task) == ("sciq", "sciq+rag:sciq-sample")
    assert closed.n == grounded.n == 6 and closed.scoring == "loglikelihood"
    assert grounded.extra["rag_gain"] == pytest.approx(grounded.value - closed.value)
    assert retrieval_summary(run) is grounded
    # the questions' own passages are in the collection: BM25 + MiniLM find them
    assert grounded.extra["support_retrieved"] >= 0.8
    with_rag = [i for i in items if i.task.startswith("sciq+rag")]
    assert len(with_rag) == 6 and all(i.output["chunks"] for i in with_rag)
    assert run.datasets[0]["name"] == "sciq" and run.datasets[0]["licence"] == "CC-BY-NC-3.0"


def test_a_reader_who_may_see_nothing_gets_the_closed_book_prompt(store: RagStore, smol: LlamaBackend) -> None:
    stranger = Principal("x", "x", (), ("nobody",))
    run, items = run_rag_eval(
        smol, lambda q: store.search(["sciq-sample"], q, principal=stranger, k=2), "sciq-sample", limit=2, seed=7,
    )
    closed, grounded = run.summaries
    assert grounded.extra["support_retrieved"] == 0.0 and grounded.extra["rag_gain"] == 0.0
    assert all(not i.output.get("chunks", []) for i in items)


def test_passages_are_written_with_their_label(tmp_path: Path) -> None:
    n = write_passages(tmp_path / "p", "official", ("staff",))
    assert n == 887  # SciQ validation: 887 of 1,000 questions have a support passage
    assert (tmp_path / "p" / "folder.meta.toml").read_text() == 'classification = "official"\ngroups = ["staff"]\n'
    assert context([]) == ""
