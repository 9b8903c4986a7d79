"""End to end: structured logs (issue #21, part 4). With `--log-format json` every line the
server writes is one JSON object; each request ends with an `answered` line carrying its
`x-request-id` (the client's own, or the one the answer reports), method, path, status and
time; nothing of the prompt or the key is in the log."""

import json

import requests

from conftest import Server, new_key

CHAT = "smollm2-135m-instruct"
SECRET_PROMPT = "Zanzibar marmalade 7781 is my secret."


def test_json_logs_carry_the_request_id_and_no_prompt_or_key(tmp_path):
    key = new_key()
    s = Server(tmp_path / "data", key, "--log-format", "json").start()
    try:
        body = {"model": CHAT, "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": 3}
        traced = requests.post(
            s.url + "/v1/chat/completions",
            headers={**s.headers(), "x-request-id": "trace-4bf92f35"},
            json=body,
            timeout=300,
        )
        assert traced.status_code == 200, traced.text
        assert traced.headers["x-request-id"] == "trace-4bf92f35"
        missing = requests.post(s.url + "/v1/embeddings", headers=s.headers(), json={"model": "nope", "input": "x"}, timeout=60)
        assert missing.status_code == 404
        generated = missing.headers["x-request-id"]
        assert generated.startswith("req_")
        # A header that could forge a log line is not echoed.
        forged = requests.get(s.url + "/v1/models", headers={**s.headers(), "x-request-id": 'a" "b'}, timeout=60)
        assert forged.headers["x-request-id"].startswith("req_")

        text = s.log()
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert lines, "the server logged nothing"
        assert all({"timestamp", "level", "target"} <= set(line) for line in lines), lines[:3]
        # Health probes (the test harness polled /health to start) succeed quietly.
        assert not any(l.get("span", {}).get("path") == "/health" for l in lines)

        def answered(request_id):
            found = [l for l in lines if l.get("message") == "answered" and l.get("span", {}).get("id") == request_id]
            assert len(found) == 1, (request_id, found)
            return found[0]

        a = answered("trace-4bf92f35")
        assert (a["span"]["method"], a["span"]["path"], a["status"], a["level"]) == ("POST", "/v1/chat/completions", 200, "INFO")
        assert isinstance(a["ms"], int) and a["ms"] >= 0
        b = answered(generated)
        assert (b["span"]["path"], b["status"]) == ("/v1/embeddings", 404)
        assert answered(forged.headers["x-request-id"])["status"] == 200
        assert "Zanzibar" not in text and key not in text and key[4:20] not in text
    finally:
        s.kill()
