"""The fault suite's judge: a truncated stream reported as finished, or a faulty answer passed through, fails."""

from __future__ import annotations

import orjson

from tests.serve.fault_outcomes import Observed, judge
from tests.serve.fault_server import FALLBACK_TEXT, UPSTREAM_TEXT


def _answer(text: str) -> str:
    return orjson.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).decode()


def _sse(*texts: str, done: bool = False, error: bool = False) -> str:
    events = [orjson.dumps({"choices": [{"delta": {"content": t}}]}).decode() for t in texts]
    if error:
        events.append('{"error": {"message": "upstream cut the stream"}}')
    if done:
        events.append("[DONE]")
    return "".join(f"data: {e}\n\n" for e in events)


def test_a_truncated_stream_that_ends_with_done_is_a_fail() -> None:
    seen = Observed(200, _sse("the ", "answer ", "is ", done=True), 0.1)
    assert not judge("sse-truncated", seen, {}).passed


def test_a_truncated_stream_that_just_ends_is_a_fail() -> None:
    assert not judge("reset-mid-stream", Observed(200, _sse("the ", "answer "), 0.1), {}).passed


def test_an_error_event_without_done_or_an_error_status_or_a_cut_connection_passes() -> None:
    assert judge("sse-truncated", Observed(200, _sse("the ", error=True), 0.1), {}).passed
    assert judge("sse-truncated", Observed(502, '{"error": {}}', 0.1), {}).passed
    assert judge("reset-mid-stream", Observed(200, _sse("the "), 0.1, "RemoteProtocolError: peer closed"), {}).passed


def test_an_error_event_followed_by_done_is_still_a_clean_finish() -> None:
    assert not judge("sse-truncated", Observed(200, _sse("the ", error=True, done=True), 0.1), {}).passed


def test_a_whole_stream_from_a_known_fallback_passes_and_nothing_else_with_done_does() -> None:
    whole = Observed(200, _sse(FALLBACK_TEXT, done=True), 0.1)
    assert judge("sse-truncated", whole, {}, FALLBACK_TEXT).passed
    assert not judge("sse-truncated", whole, {}).passed  # the fallback's words unknown: not provable
    assert not judge("sse-truncated", Observed(200, _sse("the ", FALLBACK_TEXT, done=True), 0.1), {},
                     FALLBACK_TEXT).passed


def test_a_fallback_answer_passes_only_when_it_is_the_fallbacks() -> None:
    assert judge("http-503", Observed(200, _answer(FALLBACK_TEXT), 0.1), {}, FALLBACK_TEXT).passed
    assert judge("http-503", Observed(200, _answer("Fine!"), 0.1), {}).passed  # a local model's words
    assert not judge("http-503", Observed(200, _answer("Fine!"), 0.1), {}, FALLBACK_TEXT).passed
    assert not judge("http-503", Observed(503, '{"error": {}}', 0.1), {}, FALLBACK_TEXT).passed


def test_the_faulty_upstreams_answer_passed_through_is_a_fail() -> None:
    assert not judge("wrong-model", Observed(200, _answer(UPSTREAM_TEXT), 0.1), {}).passed
    assert judge("ok", Observed(200, _answer(UPSTREAM_TEXT), 0.1), {}).passed


def test_a_body_that_is_not_a_chat_completion_is_a_fail() -> None:
    assert not judge("wrong-content-type", Observed(200, "<html>maintenance</html>", 0.1), {}).passed
    assert not judge("malformed-json", Observed(200, '{"id": "x", "choices": [ {', 0.1), {}).passed


def test_a_followed_redirect_is_a_fail_even_when_an_answer_comes_back() -> None:
    seen = Observed(200, _answer(FALLBACK_TEXT), 0.1)
    assert not judge("redirect", seen, {"steal": 1}, FALLBACK_TEXT).passed
    assert judge("redirect", seen, {}, FALLBACK_TEXT).passed


def test_a_hanging_kept_alive_connection_passes_with_an_answer_from_either_and_says_whether_it_was_met() -> None:
    upstream, fallback = Observed(200, _answer(UPSTREAM_TEXT), 0.1), Observed(200, _answer(FALLBACK_TEXT), 2.1)
    assert "fault not met" in judge("hang-keepalive", upstream, {}, FALLBACK_TEXT).why
    assert "fresh one" in judge("hang-keepalive", upstream, {"hung": 1}, FALLBACK_TEXT).why
    assert "hung" in judge("hang-keepalive", fallback, {"hung": 1}, FALLBACK_TEXT).why
    assert not judge("hang-keepalive", Observed(None, "", 30.0, "ReadTimeout"), {"hung": 1}, FALLBACK_TEXT).passed
