//! The OpenAPI document: it describes exactly the routes served (and their access rules),
//! every request body has an example, the committed snapshot is what the code makes, and
//! Swagger UI is served from the binary.

use crate::support::TestServer;
use kairos_server::http::access::RULES;
use kairos_server::http::openapi;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

/// Routes that serve the document itself, not the API.
fn is_doc_route(path: &str) -> bool {
    path == openapi::DOCUMENT_PATH || path.starts_with(openapi::UI_PATH)
}

fn concrete(template: &str) -> String {
    template
        .replace("{id}", &uuid::Uuid::now_v7().to_string())
        .replace("{name}", "q")
}

#[tokio::test]
async fn the_document_describes_every_route_and_only_those_served() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s.get(openapi::DOCUMENT_PATH).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let ruled: BTreeSet<(String, String)> = RULES
        .iter()
        .filter(|(_, p, _)| !is_doc_route(p))
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, ruled,
        "documented routes against the access table"
    );
    for (method, path) in &documented {
        // Served: whatever the answer, it is not "no such route" or "wrong method".
        let m: Method = method.parse().unwrap();
        let resp = s
            .client
            .request(m, format!("{}{}", s.base, concrete(path)))
            .send()
            .await
            .unwrap();
        assert_ne!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        // A stream (served, 200) never ends by itself: its body is not read.
        let streams = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let text = if streams {
            assert_eq!(resp.status(), StatusCode::OK, "{method} {path}");
            String::new()
        } else {
            resp.text().await.unwrap()
        };
        assert!(
            !text.contains("urn:kairos:problem:no-route"),
            "{method} {path}: {text}"
        );
        // An undocumented method on a documented path: 405 naming the documented ones.
        let resp = s
            .client
            .put(format!("{}{}", s.base, concrete(path)))
            .send()
            .await
            .unwrap();
        if !documented.contains(&("PUT".to_string(), path.clone())) {
            assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "PUT {path}");
            let allow = resp.headers()["allow"].to_str().unwrap().to_string();
            assert!(allow.contains(method.as_str()), "PUT {path}: Allow {allow}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn every_operation_has_its_bodies_examples_and_problem_answers() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let doc = s.get(openapi::DOCUMENT_PATH).await.body;
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            if let Some(body) = op.get("requestBody") {
                let json = &body["content"]["application/json"];
                assert!(
                    json.get("example").is_some() || json.get("examples").is_some(),
                    "{name}: a request body example"
                );
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{name}: a 2xx answer"
            );
            for status in ["500", "503"] {
                let problem = &responses[status]["content"]["application/problem+json"];
                assert!(problem.is_object(), "{name}: {status} as problem+json");
            }
            if !path.starts_with("/health") {
                assert!(responses.contains_key("401"), "{name}: 401");
                assert!(op["security"].is_array(), "{name}: bearer");
            }
        }
    }
    s.stop().await;
}

/// What the server serves is what the code makes. (The committed `docs/openapi.json` is
/// the document of the `kairos` binary, whose server serves the tasks feature too: the
/// snapshot test is `kairos-tasks`'s.)
#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let doc = kairos_server::http::routes(&[]).doc;
    let generated: Value = serde_json::to_value(&doc).unwrap();
    let Some(s) = TestServer::start().await else {
        return;
    };
    assert_eq!(
        s.get(openapi::DOCUMENT_PATH).await.body,
        generated,
        "served as generated"
    );
    s.stop().await;
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    let page = s
        .client
        .get(format!("{}/docs/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no CDN: {html}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let a = s
            .client
            .get(format!("{}/docs/{asset}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::OK, "{asset}");
        let text = a.text().await.unwrap();
        assert!(!text.is_empty(), "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(text.contains(openapi::DOCUMENT_PATH), "{text}");
        }
    }
    s.stop().await;
}

/// Found by schemathesis: a payload (or result) is any JSON value, not only an object, so
/// the document says so; and a query parameter whose empty value means "not given" has
/// no `format` an empty string would break.
#[tokio::test]
async fn payloads_are_any_json_and_optional_query_parameters_admit_empty() {
    let doc = serde_json::to_value(kairos_server::http::routes(&[]).doc).unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("Job", "payload"),
        ("Job", "result"),
        ("EnqueueRequest", "payload"),
        ("JobTemplate", "payload"),
        ("AckItem", "result"),
    ] {
        let s = &schemas[schema]["properties"][field];
        assert!(s.is_object(), "{schema}.{field}: {s}");
        assert!(
            s.get("type")
                .is_none_or(|t| t.as_array().is_some_and(|a| a.len() > 2)),
            "{schema}.{field} admits any JSON value: {s}"
        );
    }
    let params = doc["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let schedule_id = params.iter().find(|p| p["name"] == "schedule_id").unwrap();
    assert!(
        schedule_id["schema"].get("format").is_none(),
        "{schedule_id}"
    );
    let Some(s) = TestServer::start().await else {
        return;
    };
    let a = s.get("/v1/jobs?schedule_id=").await;
    assert_eq!(a.status, StatusCode::OK, "empty is not given");
    let job = s
        .post(
            "/v1/jobs",
            serde_json::json!({"kind": "k", "payload": [null, null]}),
        )
        .await;
    assert_eq!(job.body["payload"], serde_json::json!([null, null]));
    s.stop().await;
}
