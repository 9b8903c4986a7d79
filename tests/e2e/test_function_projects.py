"""End to end: the developer workflow (issue #20). `tensoras functions new` scaffolds a
project in each language, `functions deploy DIR` builds it (`functions build`, with cargo,
componentize-py or componentize-js) and deploys it with its tensoras.json, and the
function answers: from a clean directory, as a user would.
"""

import json
import os
import subprocess
from pathlib import Path

import openai
import pytest

from conftest import CACHE, Server, binary, new_key
from fnapi import api, call


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("projects") / "data", new_key()).start()
    yield s
    s.kill()


def cli(server, *args, cwd):
    env = dict(os.environ, TENSORAS_URL=server.url, TENSORAS_API_KEY=server.api_key)
    # A scaffolded Rust project builds in a target dir kept in the cache, so its
    # dependencies (wit-bindgen, std for wasm32-wasip2) compile once per machine.
    env["CARGO_TARGET_DIR"] = str(Path(os.environ.get("TENSORAS_GUEST_TARGET_DIR") or CACHE / "guest-target") / "projects")
    r = subprocess.run([binary(), "functions", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"tensoras functions {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.mark.parametrize(
    ("lang", "kind"), [("python", "tool"), ("js", "http"), ("rust", "tool"), ("python", "http"), ("js", "tool"), ("rust", "http")]
)
def test_a_new_project_builds_deploys_and_answers(server, tmp_path, lang, kind):
    name = f"new-{lang}-{kind}"
    cli(server, "new", name, "--lang", lang, "--kind", kind, cwd=tmp_path)
    project = tmp_path / name
    assert json.loads((project / "tensoras.json").read_text())["language"] == lang
    deployed = json.loads(cli(server, "deploy", str(project), cwd=tmp_path).stdout)
    assert deployed["name"] == name and deployed["kind"] == kind, deployed
    assert (project / "build" / f"{name}.wasm").is_file()
    if kind == "tool":
        r = call(server, name, question="What colour is the sky?")
        assert r.status_code == 200, r.text
        assert isinstance(json.loads(r.json()["output"])["answer"], str)
    elif lang == "python":  # its template streams the model's answer as server-sent events
        r = api(server, "POST", f"/functions/{name}/invoke", data="Say hi.")
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream", r.text
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and len(events) > 2, events
        assert all(isinstance(json.loads(e)["text"], str) for e in events[:-1]), events
    else:
        r = api(server, "POST", f"/functions/{name}/invoke", data="Say hi.")
        assert r.status_code == 200, r.text
        assert isinstance(r.json()["reply"], str)
    # A second build of unchanged sources does nothing (the stamp, or cargo, says so).
    again = cli(server, "build", str(project), cwd=tmp_path)
    if lang != "rust":
        assert "unchanged" in again.stderr, again.stderr


@pytest.mark.parametrize("lang", ["rust", "python", "js"])
def test_a_new_chat_function_is_a_model_for_the_openai_sdk(server, tmp_path, lang):
    name = f"new-chat-{lang}"
    cli(server, "new", name, "--lang", lang, "--kind", "chat", cwd=tmp_path)
    deployed = json.loads(cli(server, "deploy", str(tmp_path / name), cwd=tmp_path).stdout)
    assert deployed["kind"] == "chat" and deployed["model"] == f"fn:{name}", deployed
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0, timeout=300)
    ask = {"model": f"fn:{name}", "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 16, "temperature": 0}
    whole = client.chat.completions.create(**ask)
    assert whole.model == f"fn:{name}" and whole.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content and whole.choices[0].message.content == streamed
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # Without stream_options, no usage chunk.
    assert all(c.choices for c in client.chat.completions.create(**ask, stream=True))
    # Without its grant, the model call's refusal reaches the client as a 403.
    manifest_file = tmp_path / name / "tensoras.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "name": f"{name}-bare", "grants": {}}))
    cli(server, "deploy", str(tmp_path / name), cwd=tmp_path)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(**dict(ask, model=f"fn:{name}-bare"))
    assert "grants.models" in str(refused.value)


def test_new_refuses_what_it_cannot_scaffold(server, tmp_path):
    env = dict(os.environ)
    for args in (["new", "bad name"], ["new", "x", "--lang", "python", "--kind", "grpc"], ["new", "x", "--lang", "cobol"]):
        r = subprocess.run([binary(), "functions", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and r.stderr, (args, r.stderr)
    r = subprocess.run([binary(), "functions", "build", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "tensoras.json" in r.stderr, r.stderr
