"""End to end: roles, scopes and the operator key of the real binary (docs/security.md)."""

import json

import requests

from conftest import FUNCTIONS, Server, assert_openai_error, new_key


def api(server, method, path, key=None, **kw):
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.request(method, server.url + "/v1" + path, headers=headers, timeout=60, **kw)


def restart(server):
    assert server.stop() == 0
    again = Server(server.data_dir, server.api_key)
    again.start()
    return again


def test_a_restart_with_the_same_bootstrap_key_works_and_restores_a_revoked_operator(tmp_path):
    s = Server(tmp_path / "data", new_key()).start()
    try:
        boot = api(s, "GET", "/keys").json()["data"]
        assert [(k["role"], k["tenant"]) for k in boot] == [("operator", "default")]
        boot_id = boot[0]["id"]
        assert_openai_error(api(s, "DELETE", f"/keys/{boot_id}"), 409, "last_operator_key")

        s = restart(s)  # used to fail on the unique hash only when no key was left; now never
        assert api(s, "GET", "/keys").status_code == 200

        # Revoke the bootstrap key with a second operator: the bootstrap secret stops working...
        r = api(s, "POST", "/keys", json={"name": "op2", "tenant": "ops", "role": "operator"})
        assert r.status_code == 200, r.text
        op2 = r.json()["key"]
        assert api(s, "DELETE", f"/keys/{boot_id}", key=op2).status_code == 200
        assert_openai_error(api(s, "GET", "/keys"), 401, "invalid_api_key")

        # ...until a restart with the same TENSORAS_API_KEY brings the same key back as an operator.
        s = restart(s)
        keys = api(s, "GET", "/keys").json()["data"]
        assert [k["role"] for k in keys if k["id"] == boot_id] == ["operator"]
        assert len([k for k in keys if k["id"] == boot_id]) == 1, "reactivated, not inserted again"
        assert api(s, "GET", "/keys", key=op2).status_code == 200
    finally:
        s.kill()


def test_tenant_admins_stay_in_their_tenant_and_deploying_needs_the_permission(server):
    def create(body, key=None):
        r = api(server, "POST", "/keys", key=key, json=body)
        return r

    c_admin = create({"name": "c-admin", "tenant": "c", "role": "admin"}).json()["key"]
    err = assert_openai_error(create({"name": "x", "tenant": "default"}, key=c_admin), 403)
    assert err["param"] == "tenant"
    assert_openai_error(api(server, "GET", "/keys?tenant=default", key=c_admin), 403)
    assert {k["tenant"] for k in api(server, "GET", "/keys", key=c_admin).json()["data"]} == {"c"}
    assert {k["tenant"] for k in api(server, "GET", "/keys").json()["data"]} == {"c", "default"}

    plain = create({"name": "plain"}, key=c_admin).json()["key"]
    ci = create({"name": "ci", "scopes": ["functions:deploy"]}, key=c_admin).json()
    assert ci["scopes"] == ["functions:deploy"] and ci["tenant"] == "c"
    err = assert_openai_error(create({"name": "x", "scopes": ["everything"]}, key=c_admin), 400)
    assert err["param"] == "scopes"

    def deploy(key, name):
        files = {
            "file": ("calc.wasm", (FUNCTIONS / "calc.wasm").read_bytes()),
            "manifest": (None, json.dumps({"name": name, "kind": "tool"})),
        }
        return api(server, "POST", "/functions", key=key, files=files)

    assert_openai_error(deploy(plain, "calc"), 403, "insufficient_permissions")
    assert deploy(ci["key"], "calc").status_code == 201
    assert deploy(c_admin, "calc2").status_code == 201
    r = api(server, "POST", "/functions/calc/call", key=plain, json={"expression": "6*7"})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["output"]) == {"result": 42}
    assert_openai_error(api(server, "DELETE", "/functions/calc", key=plain), 403)


def test_the_keys_cli_knows_roles_scopes_and_the_last_operator(server):
    out = server.cli("keys", "create", "--name", "ci", "--tenant", "team-b", "--scope", "functions:deploy")
    assert out.stdout.strip().startswith("tns_")
    assert "role member" in out.stderr
    bad = server.cli("keys", "create", "--name", "x", "--scope", "nope", check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr
    listing = server.cli("keys", "list").stdout
    assert "functions:deploy" in listing and "operator" in listing
    op_id = next(k["id"] for k in api(server, "GET", "/keys").json()["data"] if k["role"] == "operator")
    refused = server.cli("keys", "revoke", op_id, check=False)
    assert refused.returncode != 0 and "last active operator" in refused.stderr
    assert api(server, "GET", "/keys").status_code == 200
