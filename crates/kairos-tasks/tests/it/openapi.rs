//! The document the `kairos` binary serves (the API's and this feature's routes) is the
//! committed `docs/openapi.json`, and every route of the feature is described and ruled.

use crate::support::{Backend, Place};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

async fn served_document() -> Option<Value> {
    let place = Place::open(Backend::Sqlite).await?;
    let feature: Arc<dyn kairos_server::feature::Feature> =
        Arc::new(kairos_tasks::Tasks::new(place.tasks.clone()));
    let doc = kairos_server::http::routes(&[feature]).doc;
    Some(serde_json::to_value(&doc).unwrap())
}

/// `KAIROS_UPDATE_OPENAPI=1` rewrites the snapshot.
#[tokio::test]
async fn the_committed_snapshot_is_the_document_kairos_serves() {
    let generated = served_document().await.unwrap();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("KAIROS_UPDATE_OPENAPI").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(&file, text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&file).expect("docs/openapi.json is committed"),
    )
    .unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the generated document: run \
         KAIROS_UPDATE_OPENAPI=1 cargo test -p kairos-tasks --test it openapi and review the diff"
    );
    let s = crate::support::Running::start(Backend::Sqlite)
        .await
        .unwrap();
    let (_, served) = s.get("/openapi.json").await;
    assert_eq!(served, generated, "served as generated");
    s.stop().await;
}

#[tokio::test]
async fn every_route_of_the_feature_is_described_and_ruled() {
    let doc = served_document().await.unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/v1/tasks") || path.starts_with("/v1/notifications") {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                    let op = &item[method];
                    let input = op.get("parameters").is_some() || op.get("requestBody").is_some();
                    if input {
                        assert!(op["responses"]["422"].is_object(), "{method} {path}: 422");
                    }
                    assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
                    assert!(
                        op["security"].is_array(),
                        "{method} {path}: the bearer scheme"
                    );
                }
            }
        }
    }
    let ruled: BTreeSet<(String, String)> = kairos_tasks::http::RULES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, ruled);
}
