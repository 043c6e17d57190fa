"""A "cloud" model on 127.0.0.1 that records every body it receives and echoes the user's words back.

Run as ``python recorder.py PORT LOGFILE``; every POST body is appended to LOGFILE as one line. The
answer repeats the last user message ("You said: ..."), so placeholders sent to it come back in the
answer; streamed answers are cut into 3-character chunks so placeholders straddle chunk boundaries.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def said(body: dict) -> str:
    if "messages" in body:
        users = [m.get("content") for m in body["messages"] if m.get("role") == "user"]
        text = users[-1] if users else ""
        return text if isinstance(text, str) else json.dumps(text)
    prompt = body.get("prompt") or body.get("input") or ""
    return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = ""

    def _send(self, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._send(b'{"object":"list","data":[{"id":"cloud","object":"model"}]}')

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK, open(self.log_path, "ab") as fh:
            fh.write(raw.replace(b"\n", b" ") + b"\n")
        body = json.loads(raw)
        answer = "You said: " + said(body)
        if "embeddings" in self.path:
            self._send(json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0,
                                   "embedding": [0.0, 1.0]}], "model": "cloud"}).encode())
            return
        chat = "messages" in body
        if not body.get("stream"):
            choice = ({"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                      if chat else {"index": 0, "text": answer, "finish_reason": "stop"})
            self._send(json.dumps({"id": "rec", "object": "chat.completion", "created": 0, "model": "cloud",
                                   "choices": [choice],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                                  ).encode())
            return
        events = []
        for i in range(0, len(answer), 3):
            piece = answer[i : i + 3]
            choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat
                      else {"index": 0, "text": piece, "finish_reason": None})
            events.append({"id": "rec", "object": "chat.completion.chunk", "created": 0, "model": "cloud",
                           "choices": [choice]})
        end = ({"index": 0, "delta": {}, "finish_reason": "stop"} if chat
               else {"index": 0, "text": "", "finish_reason": "stop"})
        events.append({"id": "rec", "object": "chat.completion.chunk", "created": 0, "model": "cloud",
                       "choices": [end]})
        payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        self._send(payload, "text/event-stream")

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    Handler.log_path = sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
