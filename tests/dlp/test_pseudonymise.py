"""Placeholders are consistent across texts, restored in answers (streamed too), never for redaction."""

from __future__ import annotations

from bastion.dlp import Document, Pseudonymiser, Scanner, StreamScanner, rewrite, scan_document, texts


def test_same_value_same_placeholder_across_messages_and_restored() -> None:
    doc = Document.of(["mail a.b@example.com about it", "cc a.b@example.com and c@example.org"])
    p = Pseudonymiser()
    out = p.apply(doc, scan_document(Scanner(), doc))
    assert out == ["mail [EMAIL_1] about it", "cc [EMAIL_1] and [EMAIL_2]"]
    assert p.restore("Wrote to [EMAIL_2] and [EMAIL_1]; [EMAIL_9] unknown") == (
        "Wrote to c@example.org and a.b@example.com; [EMAIL_9] unknown"
    )


def test_redaction_is_not_reversible() -> None:
    doc = Document.of(["key AKIAIOSFODNN7EXAMPLE"])
    p = Pseudonymiser("redact")
    (out,) = p.apply(doc, scan_document(Scanner(), doc))
    assert out == "key [REDACTED_AWS_ACCESS_KEY]"
    assert p.restore(out) == out


def test_streamed_placeholders_cut_across_chunks_are_restored() -> None:
    doc = Document.of(["mail a.b@example.com and card 4111 1111 1111 1111"])
    p = Pseudonymiser()
    p.apply(doc, scan_document(Scanner(), doc))
    for size in (1, 2, 3, 5, 7):
        answer = "Sure: [EMAIL_1] paid with [CREDIT_CARD_1]. [x] ["
        r = p.restorer()
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        assert "".join(r.feed(c) for c in pieces) + r.flush() == (
            "Sure: a.b@example.com paid with 4111 1111 1111 1111. [x] ["
        )


def test_request_texts_round_trip_through_rewrite() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi a@b.co"}]},
            {
                "role": "assistant",
                "tool_calls": [{"function": {"name": "f", "arguments": '{"to": "a@b.co"}'}}],
            },
        ],
    }
    found = texts("chat", body)
    assert found == ["be brief", "hi a@b.co", '{"to": "a@b.co"}']
    new = rewrite("chat", body, [t.upper() for t in found])
    assert new["messages"][1]["content"][0]["text"] == "HI A@B.CO"
    assert body["messages"][1]["content"][0]["text"] == "hi a@b.co"  # the original is untouched


def test_stream_scanner_matches_across_chunk_boundaries() -> None:
    stream = StreamScanner(Scanner(), step=8)
    text = "the mail is bob@example.org and the key AKIAIOSFODNN7EXAMPLE, that's all"
    for i in range(0, len(text), 3):
        stream.feed(text[i : i + 3])
    stream.close()
    assert stream.findings.counts() == {"aws_access_key": 1, "email": 1}
