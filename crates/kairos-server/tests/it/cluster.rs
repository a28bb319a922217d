//! `GET /v1/cluster`: a server names itself, and leads when it is alone.

use crate::support::TestServer;

#[tokio::test]
async fn a_lone_server_lists_itself_as_the_leader() {
    let Some(s) = TestServer::start().await else {
        return;
    };
    // The lead is claimed by the timer's first beat, just after start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let nodes = loop {
        let a = s.get("/v1/cluster").await;
        assert_eq!(a.status, 200, "{}", a.body);
        let nodes = a.body["nodes"].as_array().unwrap().clone();
        if nodes.len() == 1 && nodes[0]["leader"] == true {
            break nodes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never led: {}",
            a.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let address = s.base.trim_start_matches("http://");
    assert_eq!(
        nodes[0]["address"], address,
        "it advertises where it listens"
    );
    for field in ["id", "started_at", "last_seen_at"] {
        assert!(nodes[0][field].is_string(), "{field}: {}", nodes[0]);
    }
    s.stop().await;
}
