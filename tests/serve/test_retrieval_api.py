"""Retrieval over HTTP through the official ``openai`` SDK against a real gateway process.

Files, vector stores, search and ``/v1/responses`` with ``file_search``, with two keys: an officer cleared
to secret in groups staff and intel, and an analyst cleared to official in staff only. The officer
labels one document official/staff and one secret/intel; everything the analyst is shown is checked
for the secret document's text, title, id and count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from bastion.keys import KeyStore
from tests.serve.conftest import officer_and_analyst

CODEWORD = "BLUEHERON"
PUBLIC = (
    "# Visitor handbook\n\nVisitors sign in at the front desk and wear a badge at all times. The canteen opens"
    " at eight. Lost badges are reported to the security office on the ground floor.\n"
)
SECRET = (
    f"# Operation {CODEWORD}\n\nOperation {CODEWORD} moves the reserve fuel depot to the northern quarry on"
    " the fourth of March. Only the convoy commander holds the route map.\n"
)


@dataclass(frozen=True)
class Stack:
    base: str
    home: Path
    officer: OpenAI
    analyst: OpenAI
    public_doc: str
    secret_doc: str

    def audit(self, request_id: str) -> dict[str, object]:
        """The audit entry of ``request_id``, as ``bastion audit search --json`` prints it."""
        env = {**os.environ, "BASTION_HOME": str(self.home), "BASTION_KEY_HOME": f"{self.home}-keys"}
        done = subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", "audit", "search", "--request-id", request_id, "--json",
             "-c", str(self.home / "bastion.toml")],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )
        entries = json.loads(done.stdout)
        assert len(entries) == 1, entries
        return entries[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("rag-home")
    with officer_and_analyst(home) as (base, officer, analyst):
        officer.vector_stores.create(name="handbook", extra_body={"description": "site documents"})
        docs = {}
        for name, text, cls, groups in (("visitors.md", PUBLIC, "official", "staff"),
                                         (f"{CODEWORD.lower()}.md", SECRET, "secret", "intel")):
            uploaded = officer.files.create(file=(name, text.encode()), purpose="assistants")
            attached = officer.vector_stores.files.create_and_poll(
                vector_store_id="handbook", file_id=uploaded.id,
                attributes={"classification": cls, "groups": groups},
            )
            assert attached.status == "completed"
            docs[cls] = attached.model_extra["document_id"]  # type: ignore[index]
        yield Stack(base, home, officer, analyst, docs["official"], docs["secret"])


def leaks(stack: Stack, blob: object) -> bool:
    """Whether anything of the secret document (its text, title, file name, id) is in ``blob``."""
    text = json.dumps(blob, default=str) if not isinstance(blob, str) else blob
    return any(s in text.lower() for s in (CODEWORD.lower(), "northern quarry", "convoy", stack.secret_doc))


def test_counts_and_lists_cover_only_what_the_key_may_read(stack: Stack) -> None:
    assert stack.officer.vector_stores.retrieve("handbook").file_counts.total == 2
    seen = stack.analyst.vector_stores.retrieve("handbook")
    assert seen.file_counts.total == 1 and seen.file_counts.completed == 1
    listed = [s for s in stack.analyst.vector_stores.list().data if s.id == "handbook"]
    assert [s.file_counts.total for s in listed] == [1]
    files = stack.analyst.vector_stores.files.list("handbook").data
    assert [f.model_extra["document_id"] for f in files] == [stack.public_doc]  # type: ignore[index]
    assert not leaks(stack, [f.model_dump() for f in files]) and not leaks(stack, seen.model_dump())
    assert len(stack.officer.vector_stores.files.list("handbook").data) == 2


def test_search_finds_the_secret_for_the_cleared_key_only(stack: Stack) -> None:
    query = f"Where does operation {CODEWORD} move the fuel depot?"
    found = stack.officer.vector_stores.search("handbook", query=query, max_num_results=5).data
    assert found[0].file_id == stack.secret_doc and CODEWORD in found[0].content[0].text
    refused = stack.analyst.vector_stores.search("handbook", query=query, max_num_results=50).data
    assert refused and all(r.file_id == stack.public_doc for r in refused)  # the public one, nothing else
    assert not leaks(stack, [r.model_dump() for r in refused])


def test_a_cited_answer_whose_offsets_point_at_the_quoted_text(stack: Stack) -> None:
    raw = stack.officer.responses.with_raw_response.create(
        model="gemma3",  # cleared to hold secret text: the secret document may enter its prompt
        input=f"Where does operation {CODEWORD} move the reserve fuel depot?",
        tools=[{"type": "file_search", "vector_store_ids": ["handbook"]}],
        include=["file_search_call.results"],
        max_output_tokens=48,
    )
    response = raw.parse()
    assert response.output_text  # SmolLM2 said something
    search_call = next(o for o in response.output if o.type == "file_search_call")
    message = next(o for o in response.output if o.type == "message")
    citations = message.content[0].annotations  # type: ignore[union-attr]
    assert citations and citations[0].file_id == stack.secret_doc
    assert search_call.results and search_call.results[0].file_id == stack.secret_doc  # type: ignore[union-attr]
    http = httpx.Client(base_url=stack.base, headers={"authorization": f"Bearer {stack.officer.api_key}"})
    for citation, result in zip(citations, search_call.results, strict=True):  # type: ignore[union-attr, arg-type]
        extra = citation.model_extra or {}
        assert extra["title"] and extra["document_id"] == citation.file_id
        document = http.get(f"/v1/files/{citation.file_id}/content")
        assert document.status_code == 200, document.text
        assert document.text[extra["start"]:extra["end"]] == result.text  # the offsets point at the quote
    assert CODEWORD in citations[0].model_extra["title"] or CODEWORD.lower() in citations[0].filename  # type: ignore[index]
    # the audit entry names the chunks put in front of the model, for this key
    entry = stack.audit(response.id.removeprefix("resp_"))
    assert entry["status"] == 200 and entry["model"] == "gemma3"
    chunks = entry["retrieval"]["chunks"]  # type: ignore[index]
    assert [c["document"] for c in chunks][0] == stack.secret_doc
    assert all(c["sha256"] and c["id"] for c in chunks)
    assert len(chunks) == len(citations)


def test_the_uncleared_key_gets_no_restricted_text_citation_or_title(stack: Stack) -> None:
    response = stack.analyst.responses.create(
        model="smollm2",
        input="Quote the document: where does the reserve fuel depot move, on which date, and who has the map?",
        tools=[{"type": "file_search", "vector_store_ids": ["handbook"]}],
        include=["file_search_call.results"],
        max_output_tokens=48,
    )
    assert not leaks(stack, response.model_dump())
    message = next(o for o in response.output if o.type == "message")
    for citation in message.content[0].annotations:  # type: ignore[union-attr]
        assert citation.file_id == stack.public_doc  # type: ignore[union-attr]
    entry = stack.audit(response.id.removeprefix("resp_"))
    assert all(c["document"] != stack.secret_doc for c in entry["retrieval"]["chunks"])  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):  # not "forbidden": its existence is not theirs to learn
        stack.analyst.files.content(stack.secret_doc)
    with pytest.raises(openai.NotFoundError):
        stack.analyst.vector_stores.files.retrieve(stack.secret_doc, vector_store_id="handbook")


def test_a_key_may_not_label_above_its_clearance_or_for_other_groups(stack: Stack) -> None:
    upload = stack.analyst.files.create(file=("note.txt", b"a note for the intel cell"), purpose="assistants")
    with pytest.raises(openai.PermissionDeniedError, match="clearance"):
        stack.analyst.vector_stores.files.create("handbook", file_id=upload.id,
                                                 attributes={"classification": "secret", "groups": "staff"})
    with pytest.raises(openai.PermissionDeniedError, match="own groups"):
        stack.analyst.vector_stores.files.create("handbook", file_id=upload.id,
                                                 attributes={"classification": "official", "groups": "intel"})
    with pytest.raises(openai.BadRequestError, match="classification"):
        stack.analyst.vector_stores.files.create("handbook", file_id=upload.id, attributes={"groups": "staff"})
    with pytest.raises(openai.NotFoundError):  # someone else's upload is not there for this key
        officer_upload = stack.officer.files.create(file=("x.txt", b"officer's"), purpose="assistants")
        stack.analyst.vector_stores.files.create("handbook", file_id=officer_upload.id,
                                                 attributes={"classification": "official", "groups": "staff"})
    assert stack.analyst.vector_stores.retrieve("handbook").file_counts.total == 1  # nothing was written


def test_malformed_uploads_get_a_clear_error_and_leave_the_store_as_it_was(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError, match=r"report\.pdf.*not a PDF"):
        stack.officer.files.create(file=("report.pdf", b"this is not a pdf"), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match=r"extension '\.exe'"):
        stack.officer.files.create(file=("tool.exe", b"MZ\x90\x00"), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        stack.officer.files.create(file=("a.txt", b"text"), purpose="nonsense")  # type: ignore[arg-type]
    # a PDF header over garbage passes the upload check and fails where it is parsed, by name
    broken = stack.officer.files.create(file=("broken.pdf", b"%PDF-1.7\n garbage \x00\x01"), purpose="assistants")
    with pytest.raises(openai.BadRequestError, match=r"broken\.pdf"):
        stack.officer.vector_stores.files.create("handbook", file_id=broken.id,
                                                 attributes={"classification": "official", "groups": "staff"})
    assert stack.officer.vector_stores.retrieve("handbook").file_counts.total == 2
    not_multipart = httpx.post(stack.base + "/v1/files", content=b"{}",
                               headers={"authorization": f"Bearer {stack.officer.api_key}",
                                        "content-type": "application/json"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["error"]["message"]


def test_files_belong_to_their_uploader_and_delete_removes_the_document(stack: Stack) -> None:
    upload = stack.officer.files.create(file=("temp.md", b"# Temp\n\nThe kettle is descaled on Fridays."),
                                        purpose="assistants")
    assert upload.id in [f.id for f in stack.officer.files.list().data]
    assert upload.id not in [f.id for f in stack.analyst.files.list().data]
    with pytest.raises(openai.NotFoundError):
        stack.analyst.files.retrieve(upload.id)
    stack.officer.vector_stores.files.create_and_poll(
        vector_store_id="handbook", file_id=upload.id, attributes={"classification": "official", "groups": "staff"}
    )
    assert stack.analyst.vector_stores.retrieve("handbook").file_counts.total == 2
    with pytest.raises(openai.PermissionDeniedError):  # readable, but not the analyst's to delete
        stack.analyst.vector_stores.files.delete(upload.id, vector_store_id="handbook")
    assert stack.officer.files.delete(upload.id).deleted
    assert stack.analyst.vector_stores.retrieve("handbook").file_counts.total == 1
    hits = stack.officer.vector_stores.search("handbook", query="kettle descaled Fridays").data
    assert all("kettle" not in h.content[0].text for h in hits)


def test_a_rotated_key_keeps_what_the_key_it_replaced_owned(stack: Stack) -> None:
    upload = stack.officer.files.create(file=("rota.md", b"# Rota\n\nThe night shift starts at ten."),
                                        purpose="assistants")
    stack.officer.vector_stores.files.create_and_poll(
        vector_store_id="handbook", file_id=upload.id, attributes={"classification": "official", "groups": "staff"}
    )
    keys = KeyStore(stack.home / "bastion.db")
    new, _ = keys.rotate(stack.officer.api_key.split("_")[1], overlap=timedelta(hours=1))
    keys.close()
    successor = OpenAI(base_url=stack.base + "/v1", api_key=new.key, max_retries=0, timeout=120)
    assert successor.files.retrieve(upload.id).filename == "rota.md"  # the upload is still its owner's
    assert upload.id in [f.id for f in successor.files.list().data]
    mine = successor.files.create(file=("new.md", b"# New\n\nWritten after the rotation."), purpose="assistants")
    with pytest.raises(openai.NotFoundError):  # what the successor owns is not the replaced key's
        stack.officer.files.retrieve(mine.id)
    with pytest.raises(openai.PermissionDeniedError):  # still not the analyst's to delete
        stack.analyst.vector_stores.files.delete(upload.id, vector_store_id="handbook")
    assert successor.vector_stores.files.delete(upload.id, vector_store_id="handbook").deleted
    assert successor.files.delete(upload.id).deleted and successor.files.delete(mine.id).deleted
    assert stack.analyst.vector_stores.retrieve("handbook").file_counts.total == 1  # the public document


def test_deleting_a_vector_store_is_for_administrators(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="administrators"):
        stack.officer.vector_stores.delete("handbook")
    assert stack.officer.vector_stores.retrieve("handbook").file_counts.total == 2


def test_unknown_store_and_no_key_are_openai_errors(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError):
        stack.officer.vector_stores.search("no-such-store", query="anything")
    anonymous = OpenAI(base_url=stack.base + "/v1", api_key="bst_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.vector_stores.list()
    with pytest.raises(openai.BadRequestError, match="stream"):
        stack.officer.responses.create(model="smollm2", input="hi", stream=True)


def test_retrieval_is_refused_for_a_route_that_leaves_the_host(stack: Stack) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="outside this host"):
        stack.officer.responses.create(
            model="cloud", input=f"What is operation {CODEWORD}?",
            tools=[{"type": "file_search", "vector_store_ids": ["handbook"]}],
        )
