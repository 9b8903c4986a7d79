"""End to end: knowledge-base data sources given by URL. A local HTTP server plays the web
site; the server under test downloads the document into a file, ingests it, and refuses
private addresses unless started with --url-sources-allow-private."""

import http.server
import threading
import time

import pytest
import requests

from conftest import Server, new_key

DOC = b"The Quillfeather library lends telescopes to members on Thursdays."


class Site(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/docs/telescopes.txt":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(DOC)))
            self.end_headers()
            self.wfile.write(DOC)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/docs/telescopes.txt")
            self.end_headers()
        elif self.path == "/big.txt":
            body = b"x" * 4096
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def trusting(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("url") / "data", new_key(), "--url-sources-allow-private",
               "--max-file-bytes", "2048").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("url-strict") / "data", new_key()).start()
    yield s
    s.kill()


def api(server, method, path, **kw):
    return requests.request(method, server.url + "/v1" + path, headers=server.headers(), timeout=120, **kw)


def new_kb(server):
    r = api(server, "POST", "/knowledge-bases", json={"name": "web"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_url_is_downloaded_ingested_and_retrievable(trusting, site):
    kb = new_kb(trusting)
    r = api(trusting, "POST", f"/knowledge-bases/{kb}/data-sources",
            json={"type": "url", "url": site + "/moved", "metadata": {"team": "astro"}})
    assert r.status_code == 202, r.text
    source = r.json()
    assert source["metadata"] == {"team": "astro", "url": site + "/moved"}
    deadline = time.time() + 120
    while (s := api(trusting, "GET", f"/knowledge-bases/{kb}/data-sources/{source['id']}").json())["status"] not in ("completed", "failed"):
        assert time.time() < deadline, s
        time.sleep(0.2)
    assert s["status"] == "completed", s
    file = api(trusting, "GET", f"/files/{source['file_id']}").json()
    assert (file["filename"], file["purpose"], file["bytes"]) == ("telescopes.txt", "knowledge_base", len(DOC))
    hits = api(trusting, "POST", f"/knowledge-bases/{kb}/retrieve",
               json={"query": "Where can I borrow a telescope?", "filters": {"url": site + "/moved"}}).json()["data"]
    assert hits and "Quillfeather" in hits[0]["text"]


@pytest.mark.parametrize("url,status,code", [
    ("/missing.txt", 400, "url_fetch_failed"),
    ("/big.txt", 413, "file_too_large"),
])
def test_remote_failures_are_client_errors(trusting, site, url, status, code):
    kb = new_kb(trusting)
    r = api(trusting, "POST", f"/knowledge-bases/{kb}/data-sources", json={"url": site + url})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == ("url", code)
    assert api(trusting, "GET", f"/knowledge-bases/{kb}/data-sources").json()["data"] == []


def test_private_addresses_and_other_schemes_are_refused_by_default(strict, site):
    kb = new_kb(strict)
    for url in [site + "/docs/telescopes.txt", "http://169.254.169.254/latest/meta-data/", "ftp://example.com/a.txt",
                "s3://bucket/key.txt", "not a url"]:
        r = api(strict, "POST", f"/knowledge-bases/{kb}/data-sources", json={"url": url})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["code"] == "url_not_allowed", (url, r.text)
    for body, param in [({"url": 5}, "url"), ({"type": "url"}, "url"), ({"url": site, "file_id": "file-x"}, "url"),
                        ({"type": "s3"}, "type")]:
        r = api(strict, "POST", f"/knowledge-bases/{kb}/data-sources", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    # Nothing was stored on the way.
    assert api(strict, "GET", "/files").json()["data"] == []
