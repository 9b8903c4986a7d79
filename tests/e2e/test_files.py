"""End to end: the Files API through the official `openai` Python SDK."""

import openai
import pytest

from conftest import Server, new_key


@pytest.fixture(scope="module")
def files_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("files") / "data", new_key(), "--max-file-bytes", "65536").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(files_server):
    return openai.OpenAI(base_url=files_server.url + "/v1", api_key=files_server.api_key, max_retries=0, timeout=60)


def test_create_retrieve_content_list_delete(client, tmp_path):
    path = tmp_path / "facts.md"
    path.write_bytes(b"# Facts\n\nThe lighthouse on Skerry Island was painted teal in 1987.\n")
    f = client.files.create(file=path.open("rb"), purpose="knowledge_base")
    assert f.id.startswith("file-")
    assert f.object == "file"
    assert f.bytes == path.stat().st_size
    assert f.filename == "facts.md"
    assert f.purpose == "knowledge_base"
    assert f.status == "processed"

    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).content == path.read_bytes()

    other = client.files.create(file=("data.jsonl", b'{"a": 1}\n'), purpose="batch")
    ids = [x.id for x in client.files.list()]
    assert f.id in ids and other.id in ids
    assert [x.id for x in client.files.list(purpose="batch")] == [other.id]

    deleted = client.files.delete(f.id)
    assert deleted.id == f.id and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)


def test_sdk_pagination_walks_every_file(client):
    created = {client.files.create(file=(f"p{i}.txt", f"page {i}".encode()), purpose="user_data").id for i in range(5)}
    seen = [x.id for x in client.files.list(purpose="user_data", limit=2)]
    assert len(seen) == len(set(seen))
    assert created <= set(seen)


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision", "user_data", "evals", "knowledge_base"])
def test_every_openai_purpose_is_accepted(client, purpose):
    f = client.files.create(file=("x.txt", b"x"), purpose=purpose)
    assert f.purpose == purpose
    client.files.delete(f.id)


def test_errors_are_openai_errors(client, files_server):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("x.txt", b"x"), purpose="nonsense")
    assert e.value.body["param"] == "purpose"
    with pytest.raises(openai.APIStatusError) as e:
        client.files.create(file=("big.txt", b"a" * 65537), purpose="assistants")
    assert e.value.status_code == 413
    assert e.value.body["code"] == "file_too_large"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-doesnotexist")
    bad = openai.OpenAI(base_url=files_server.url + "/v1", api_key="tns_" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.files.list()


def test_another_tenant_cannot_see_a_file(client, files_server):
    f = client.files.create(file=("mine.txt", b"mine"), purpose="assistants")
    out = files_server.cli("keys", "create", "--name", "b", "--tenant", "other-team")
    key = next(w for w in out.stdout.split() if w.startswith("tns_"))
    theirs = openai.OpenAI(base_url=files_server.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        theirs.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        theirs.files.delete(f.id)
    assert f.id not in [x.id for x in theirs.files.list()]
    assert client.files.retrieve(f.id).id == f.id
