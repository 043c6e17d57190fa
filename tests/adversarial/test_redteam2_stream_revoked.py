"""Red team 2: a stream opened before its key was revoked kept streaming to the end.

Revocation reaches every replica within a second for *new* requests (tests/serve/test_propagation.py),
but a request already streaming is never looked at again: a key holder who expects to be revoked opens
long streams first (``max_tokens`` as high as allowed) and they keep generating, holding quota and
returning text, for as long as the model writes. A real ``bastion serve`` and a streaming upstream on
127.0.0.1; the key is revoked in the shared store, as ``bastion keys revoke`` does. Fix: an open
stream re-checks its key and model about once a second (``serve/sse.py``, ``rechecked``) and ends with
the error event of the refusal; the cut answer is audited as partial.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from bastion.keys import KeyStore
from tests.serve.replicas import replicas
from tests.serve.sse_upstream import model_table, sse_upstream

CHUNKS = 40
GAP_S = 0.1  # 4 s of streaming


@pytest.mark.slow
def test_a_stream_ends_soon_after_its_key_is_revoked(tmp_path: Path) -> None:
    with sse_upstream(chunks=CHUNKS, gap_s=GAP_S) as upstream, replicas(
        tmp_path, count=1, admit={}, models=model_table(upstream.url())
    ) as running:
        keys = KeyStore(running.store)  # the store the CLI writes ('bastion keys revoke')
        ident = keys.authenticate(running.key).key_id
        body = {"model": "mock", "messages": [{"role": "user", "content": "q"}], "stream": True,
                "max_tokens": 200}
        late = 0
        revoked_at: float | None = None
        with httpx.stream("POST", running.bases[0] + "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {running.key}"}) as r:
            assert r.status_code == 200
            lines: list[str] = []
            for line in r.iter_lines():
                lines.append(line)
                if revoked_at is None and '"content"' in line:
                    keys.revoke(ident)
                    revoked_at = time.monotonic()
                elif revoked_at is not None and '"content"' in line and time.monotonic() - revoked_at > 1.5:
                    late += 1
        refused = httpx.post(running.bases[0] + "/v1/chat/completions", json={**body, "stream": False},
                             headers={"Authorization": f"Bearer {running.key}"}, timeout=30)
        found = running.bastion("audit", "search", "--kind", "request", "--json")
    keys.close()
    assert refused.status_code == 401  # a new request is refused at once
    assert late == 0, f"{late} chunks streamed more than 1.5 s after the key was revoked"
    events = [ln for ln in lines if ln.startswith("data: ")]
    assert '"error"' in events[-1] and "revoked" in events[-1] and "[DONE]" not in events[-1], events[-1]
    doc = json.loads(found.stdout)
    entries = doc["entries"] if isinstance(doc, dict) else doc
    [cut] = [e for e in entries if e["principal"] == ident]  # audited once, as a cut answer
    assert (cut["status"], cut["partial"]) == (401, True), cut
