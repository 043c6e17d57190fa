"""Red-team: deleting an upload while it is being attached must not leave its document behind.

This once worked. The attach ingests the upload (seconds for a long document: the chunks are embedded) and only then
records which document it made; a ``DELETE /v1/files/{id}`` in between finds no attachment, removes the
file, and the document that the ingestion then writes belongs to nobody: the uploader's delete did not
remove it, no key may detach it, and it stays searchable (the attach itself answered 500: the
attachment row's foreign key failed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.serve.conftest import officer_and_analyst

LONG = "\n\n".join(
    f"Section {i}. The Halloran pump station log records pressure {i * 7 % 113} bar at valve {i % 17} on the"
    f" night shift, with the Halloran relief crew noting a drift of {i % 5} percent." for i in range(900)
)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenAI, OpenAI]]:
    home: Path = tmp_path_factory.mktemp("redteam-delete-race")
    with officer_and_analyst(home) as (_, officer, analyst):
        officer.vector_stores.create(name="plant")
        yield officer, analyst


def test_a_file_deleted_while_it_is_attached_leaves_no_document(clients: tuple[OpenAI, OpenAI]) -> None:
    officer, analyst = clients
    up = analyst.files.create(file=("halloran.md", LONG.encode()), purpose="assistants")
    outcome: list[object] = []

    def attach() -> None:
        try:
            outcome.append(analyst.vector_stores.files.create(
                "plant", file_id=up.id, attributes={"classification": "official", "groups": "staff"}))
        except openai.APIError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attach)
    worker.start()
    time.sleep(1.0)  # the attach has read the upload and is embedding its chunks
    analyst.files.delete(up.id)
    worker.join(timeout=300)
    assert outcome, "the attach did not finish"
    # a 404 naming the deleted file (or, on a machine fast enough to finish first, a normal attach)
    assert not isinstance(outcome[0], openai.APIError) or isinstance(outcome[0], openai.NotFoundError), outcome[0]
    hits = officer.vector_stores.search("plant", query="Halloran pump station relief crew").data
    assert hits == [], f"the deleted upload's document is still searchable (attach gave {outcome[0]!r:.200})"
    assert officer.vector_stores.retrieve("plant").file_counts.total == 0
