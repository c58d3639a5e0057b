//! The core refuses requests without the token, with a wrong token, with a
//! foreign `Host` (DNS rebinding) or with a foreign `Origin`, over a real
//! socket against the core the launcher started.

use reqwest::Method;
use reqwest::header::{HOST, ORIGIN};

use jarvis_tests::TestHome;

fn code(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn requests_without_the_right_token_host_or_origin_are_refused() {
    let home = TestHome::new();
    let _launcher = home.up();
    let api = home.api();
    let port = api.base_url.rsplit(':').next().unwrap().to_owned();

    let none = api
        .anonymous(Method::POST, "/v1/conversations")
        .send()
        .unwrap();
    assert_eq!(code(none), (401, "unauthorized".into()));

    let wrong = api
        .anonymous(Method::POST, "/v1/conversations")
        .bearer_auth("not-the-token")
        .send()
        .unwrap();
    assert_eq!(code(wrong), (401, "unauthorized".into()));

    let almost = api
        .anonymous(
            Method::GET,
            "/v1/conversations/00000000000000000000000000000000",
        )
        .bearer_auth(format!("{}x", api.token))
        .send()
        .unwrap();
    assert_eq!(code(almost), (401, "unauthorized".into()));

    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1:1".to_owned(),
        String::new(),
    ] {
        let response = api
            .request(Method::POST, "/v1/conversations")
            .header(HOST, host.as_str())
            .send()
            .unwrap();
        assert_eq!(
            code(response),
            (403, "host_not_allowed".into()),
            "Host {host:?}"
        );
    }
    // Health routes need no token but still refuse a rebinding Host.
    let health = api
        .anonymous(Method::GET, "/healthz")
        .header(HOST, "evil.example")
        .send()
        .unwrap();
    assert_eq!(code(health), (403, "host_not_allowed".into()));

    for origin in [
        "http://evil.example",
        "null",
        &format!("http://127.0.0.1:{port}.evil.example"),
    ] {
        let response = api
            .request(Method::POST, "/v1/conversations")
            .header(ORIGIN, origin)
            .send()
            .unwrap();
        assert_eq!(
            code(response),
            (403, "origin_not_allowed".into()),
            "Origin {origin}"
        );
    }

    // A cross-site WebSocket upgrade is refused before any route sees it.
    let upgrade = api
        .request(Method::GET, "/v1/ws")
        .header(ORIGIN, "http://evil.example")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .unwrap();
    assert_eq!(code(upgrade), (403, "origin_not_allowed".into()));

    // The app's own origin with the token is accepted, and no wildcard CORS
    // header is ever sent.
    let own = api
        .request(Method::POST, "/v1/conversations")
        .header(ORIGIN, format!("http://localhost:{port}"))
        .send()
        .unwrap();
    assert_eq!(own.status(), 201);
    assert!(own.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let home = TestHome::new();
    let _launcher = home.up();
    let api = home.api();
    let id = api.create_conversation();

    let bad_role = api.add_message(&id, "root", "hi");
    assert_eq!(code(bad_role), (400, "bad_request".into()));
    let empty = api.add_message(&id, "user", "   ");
    assert_eq!(code(empty), (400, "bad_request".into()));
    let not_json = api
        .request(Method::POST, &format!("/v1/conversations/{id}/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(code(not_json), (400, "bad_request".into()));
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_large = api.add_message(&id, "user", &huge);
    assert_eq!(code(too_large), (413, "payload_too_large".into()));
    let unknown = api.add_message("0123456789abcdef0123456789abcdef", "user", "hi");
    assert_eq!(code(unknown), (404, "not_found".into()));
    let hostile = api.add_message("..%2F..%2Fetc", "user", "hi");
    assert_eq!(code(hostile), (404, "not_found".into()));

    assert_eq!(api.messages(&id).unwrap(), Vec::<String>::new());
}
