//! The Files API against a real server: upload, list (purpose filter, pagination),
//! retrieve, content, delete; size limit, sniffing, tenant isolation, persistence and
//! OpenAI-shaped errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, assert_openai_error};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

async fn upload(s: &Server, key: &str, name: &str, bytes: Vec<u8>, purpose: Option<&str>) -> (u16, Value) {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    if let Some(p) = purpose {
        form = form.text("purpose", p.to_owned());
    }
    let resp = s.client().post(s.url("/v1/files")).bearer_auth(key).multipart(form).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn get_json(s: &Server, key: &str, path: &str) -> (u16, Value) {
    let resp = s.client().get(s.url(path)).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn upload_list_get_content_delete() {
    let s = Server::start().await;
    let (status, f) =
        upload(&s, &s.key, "notes.md", b"# Notes\n\nThe vault code is 4417.\n".to_vec(), Some("knowledge_base")).await;
    assert_eq!(status, 200, "{f}");
    let id = f["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-"), "{id}");
    assert_eq!(f["object"], "file");
    assert_eq!(f["bytes"], 33);
    assert_eq!(f["filename"], "notes.md");
    assert_eq!(f["purpose"], "knowledge_base");
    assert_eq!(f["status"], "processed");
    assert_eq!(f["content_type"], "text/markdown");
    assert!(f["created_at"].as_i64().unwrap() > 1_700_000_000);

    let (status, pdf) = upload(&s, &s.key, "report.bin", b"%PDF-1.4\n%...".to_vec(), Some("assistants")).await;
    assert_eq!(status, 200, "{pdf}");
    assert_eq!(pdf["content_type"], "application/pdf");

    let (status, got) = get_json(&s, &s.key, &format!("/v1/files/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, f);

    let resp = s.client().get(s.url(&format!("/v1/files/{id}/content"))).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/markdown");
    assert_eq!(&resp.bytes().await.unwrap()[..], b"# Notes\n\nThe vault code is 4417.\n");

    let (_, list) = get_json(&s, &s.key, "/v1/files").await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()));
    let (_, list) = get_json(&s, &s.key, "/v1/files?purpose=assistants").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], pdf["id"]);

    let resp = s.client().delete(s.url(&format!("/v1/files/{id}"))).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"id": id, "object": "file", "deleted": true}));
    let (status, err) = get_json(&s, &s.key, &format!("/v1/files/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(assert_openai_error(&err)["code"], "file_not_found");
    let (status, _) = get_json(&s, &s.key, &format!("/v1/files/{id}/content")).await;
    assert_eq!(status, 404);
    let resp = s.client().delete(s.url(&format!("/v1/files/{id}"))).bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(!s.data.path().join("objects/files/alpha").join(&id).exists(), "bytes removed");
}

#[tokio::test]
async fn pagination_with_limit_after_and_order() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, f) = upload(&s, &s.key, &format!("f{i}.txt"), format!("file {i}").into_bytes(), Some("user_data")).await;
        assert_eq!(status, 200, "{f}");
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/v1/files?limit=2&order=asc".to_owned()
        } else {
            format!("/v1/files?limit=2&order=asc&after={after}")
        };
        let (status, page) = get_json(&s, &s.key, &path).await;
        assert_eq!(status, 200, "{page}");
        for f in page["data"].as_array().unwrap() {
            seen.push(f["id"].as_str().unwrap().to_owned());
        }
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    let mut expected = ids.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "every file exactly once");
    for (path, param) in [("/v1/files?limit=0", "limit"), ("/v1/files?order=up", "order"), ("/v1/files?after=file-nope", "after")]
    {
        let (status, err) = get_json(&s, &s.key, path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(assert_openai_error(&err)["param"], param);
    }
}

#[tokio::test]
async fn bad_uploads_get_openai_errors() {
    let s = Server::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| c.max_file_bytes = 1000).await;
    let (status, err) = upload(&s, &s.key, "a.txt", b"x".to_vec(), None).await;
    assert_eq!(status, 400);
    assert_eq!(assert_openai_error(&err)["param"], "purpose");
    let (status, err) = upload(&s, &s.key, "a.txt", b"x".to_vec(), Some("training")).await;
    assert_eq!(status, 400);
    assert_eq!(assert_openai_error(&err)["code"], "invalid_value");
    let (status, err) = upload(&s, &s.key, "big.txt", vec![b'a'; 1001], Some("assistants")).await;
    assert_eq!(status, 413);
    assert_eq!(assert_openai_error(&err)["code"], "file_too_large");
    let (status, ok) = upload(&s, &s.key, "fits.txt", vec![b'a'; 1000], Some("assistants")).await;
    assert_eq!(status, 200, "{ok}");

    let form = Form::new().text("purpose", "assistants");
    let resp = s.client().post(s.url("/v1/files")).bearer_auth(&s.key).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(assert_openai_error(&err)["param"], "file");

    let resp = s.client().post(s.url("/v1/files")).bearer_auth(&s.key).body("not multipart").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_openai_error(&resp.json::<Value>().await.unwrap());

    let resp = s.client().get(s.url("/v1/files")).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // Nothing but the one good file was kept, in the store or on disk.
    let (_, list) = get_json(&s, &s.key, "/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let on_disk = std::fs::read_dir(s.data.path().join("objects/files/alpha")).unwrap().count();
    assert_eq!(on_disk, 1);
}

#[tokio::test]
async fn tenants_are_isolated_and_files_persist() {
    let s = Server::start().await;
    let (_, f) = upload(&s, &s.key, "secret.txt", b"alpha only".to_vec(), Some("assistants")).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let other = s.key_for_tenant("beta", false).await;
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let (status, err) = get_json(&s, &other, &path).await;
        assert_eq!(status, 404, "{path}");
        assert_openai_error(&err);
    }
    let resp = s.client().delete(s.url(&format!("/v1/files/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let (_, list) = get_json(&s, &other, "/v1/files").await;
    assert!(list["data"].as_array().unwrap().is_empty());

    let key = s.key.clone();
    let data = s.stop().await;
    let s = Server::start_with(data, |_| {}).await;
    let resp = s.client().get(s.url(&format!("/v1/files/{id}/content"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.bytes().await.unwrap()[..], b"alpha only");
}

#[tokio::test]
async fn memory_store_serves_files_too() {
    let s =
        Server::start_with(std::sync::Arc::new(tempfile::tempdir().unwrap()), |c| c.files_url = Some("memory://".into())).await;
    let (status, f) = upload(&s, &s.key, "m.json", br#"{"a": 1}"#.to_vec(), Some("batch")).await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["content_type"], "application/json");
    let resp = s
        .client()
        .get(s.url(&format!("/v1/files/{}/content", f["id"].as_str().unwrap())))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(&resp.bytes().await.unwrap()[..], br#"{"a": 1}"#);
    assert!(!s.data.path().join("objects/files").exists());
}
