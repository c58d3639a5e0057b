//! The launcher's UI origin from the outside (raw HTTP; the browser
//! tests in `tests/browser/` drive the rest in chromium): sign-in URLs
//! from `jarvis up`, a second launch and `jarvis open`; what the guard
//! refuses; the UI files from `JARVIS_UI_DIR`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use jarvis_tests::TestHome;

fn ui_line(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("ui: "))
        .unwrap_or_else(|| panic!("no `ui:` line in {lines:?}"))
        .to_owned()
}

/// One raw HTTP/1.1 request (the guard looks at exactly these headers).
fn raw(origin: &str, request: &str) -> String {
    let address = origin.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

fn status(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"))
}

#[test]
fn sign_in_urls_come_from_up_a_second_launch_and_open_and_work_once() {
    let home = TestHome::new();
    let ui_dir = home.scratch().join("ui");
    std::fs::create_dir_all(&ui_dir).unwrap();
    std::fs::write(
        ui_dir.join("index.html"),
        "<!doctype html><title>Jarvis</title>",
    )
    .unwrap();
    home.set_env("JARVIS_UI_DIR", ui_dir.to_str().unwrap());
    let mut jarvis = home.up();
    let first = jarvis_tests::wait_for(Duration::from_secs(10), "the ui line", || {
        jarvis
            .stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("ui: ").map(str::to_owned))
    });
    let origin = first.split("/signin").next().unwrap().to_owned();
    assert_eq!(
        home.instance().unwrap().ui_url.as_deref(),
        Some(origin.as_str()),
        "instance.json tells clients where the UI is"
    );

    // A second launch and `jarvis open` each print a fresh URL.
    let second = home.run(&["up", "--no-browser"]);
    assert!(second.status.success(), "{}", second.stderr);
    let second_url = ui_line(&second.stdout.lines().map(str::to_owned).collect::<Vec<_>>());
    let opened = home.run(&["open", "--no-browser"]);
    assert!(opened.status.success(), "{}", opened.stderr);
    let open_url = ui_line(&opened.stdout.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_ne!(second_url, open_url);
    assert_ne!(first, open_url);

    for url in [&first, &second_url, &open_url] {
        let path = url.strip_prefix(&origin).unwrap();
        let host = origin.strip_prefix("http://").unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let reply = raw(&origin, &request);
        assert_eq!(status(&reply), 303, "{reply}");
        assert!(
            reply.to_lowercase().contains("set-cookie: jarvis_session_"),
            "{reply}"
        );
        let replay = raw(&origin, &request);
        assert_eq!(status(&replay), 403, "a code works once: {replay}");
        assert!(!replay.to_lowercase().contains("set-cookie"));
    }

    // The page itself is served from JARVIS_UI_DIR with the headers; nothing
    // outside that folder is, however the path is spelled.
    let host = origin.strip_prefix("http://").unwrap();
    let page = raw(
        &origin,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status(&page), 200);
    assert!(page.contains("<title>Jarvis</title>"));
    assert!(
        page.to_lowercase()
            .contains("content-security-policy: default-src 'self'")
    );
    std::fs::write(home.scratch().join("secret.txt"), "secret").unwrap();
    for path in [
        "/../secret.txt",
        "/..%2Fsecret.txt",
        "/%2e%2e/secret.txt",
        "/.hidden",
    ] {
        let reply = raw(
            &origin,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(!reply.contains("secret"), "{path}: {reply}");
    }

    // The API token gets sign-in codes only from a client without Origin;
    // a wrong token gets nothing.
    let refused = raw(
        &origin,
        &format!(
            "POST /launcher/signin-codes HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status(&refused), 401, "{refused}");
    let foreign = raw(
        &origin,
        &format!(
            "POST /launcher/signin-codes HTTP/1.1\r\nHost: {host}\r\nOrigin: http://127.0.0.1:1\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            home.token()
        ),
    );
    assert_eq!(status(&foreign), 403, "{foreign}");
    // The same for the stop `jarvis stop` asks for: no token, a wrong
    // token or a page's origin stops nothing.
    for request in [
        format!(
            "POST /launcher/stop HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "POST /launcher/stop HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "POST /launcher/stop HTTP/1.1\r\nHost: {host}\r\nOrigin: http://127.0.0.1:1\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            home.token()
        ),
    ] {
        let reply = raw(&origin, &request);
        assert!([401, 403].contains(&status(&reply)), "{request}: {reply}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        jarvis.try_exit().is_none(),
        "Jarvis stopped: {}",
        jarvis.stderr()
    );
    assert!(home.api().ready());

    jarvis.terminate();
    let closed = home.run(&["open", "--no-browser"]);
    assert!(!closed.status.success());
    assert!(
        closed.stderr.contains("Jarvis is not running"),
        "{}",
        closed.stderr
    );
    assert!(closed.stderr.contains("hint:"), "{}", closed.stderr);
}

#[test]
fn without_ui_files_the_page_says_what_is_missing() {
    let home = TestHome::new();
    home.set_env(
        "JARVIS_UI_DIR",
        home.scratch().join("no-ui").to_str().unwrap(),
    );
    let jarvis = home.up();
    let url = jarvis_tests::wait_for(Duration::from_secs(10), "the ui line", || {
        jarvis
            .stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("ui: ").map(str::to_owned))
    });
    let origin = url.split("/signin").next().unwrap();
    let host = origin.strip_prefix("http://").unwrap();
    let page = raw(
        origin,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status(&page), 503);
    assert!(page.contains("UI files are missing"), "{page}");
    assert!(page.contains("no-ui"), "the page names the folder: {page}");
}
