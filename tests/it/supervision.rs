//! The launcher restarts a crashed core, and gives up with a reason when it
//! keeps crashing.

use std::time::Duration;

use jarvis_tests::{Signal, TestHome, alive, signal, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn kill9_of_the_core_is_restarted_on_the_same_address_and_token() {
    let home = TestHome::new();
    let _launcher = home.up();
    let api = home.api();
    let id = api.create_conversation();
    let old = home.instance().unwrap();
    assert!(signal(old.core.pid, Signal::Kill));
    wait_for(SETTLE, "the killed core to be gone", || {
        (!alive(old.core.pid)).then_some(())
    });
    // The launcher holds the socket: a request made while no core runs
    // waits in its queue and the restarted core answers it, where a
    // port that nothing listens on would refuse it.
    #[cfg(unix)]
    {
        let fresh = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(SETTLE)
            .build()
            .unwrap();
        let health = fresh
            .get(format!("{}/healthz", old.base_url))
            .send()
            .unwrap();
        assert_eq!(health.status(), 200);
    }

    let new = wait_for(SETTLE, "a restarted core", || {
        home.instance()
            .filter(|i| i.core.pid != old.core.pid && i.core.restarts == 1)
    });
    assert_eq!(new.base_url, old.base_url);
    assert!(alive(new.core.pid));
    // The old client (same URL, same token) works again.
    wait_for(SETTLE, "the API to answer", || api.ready().then_some(()));
    assert_eq!(api.add_message(&id, "user", "still here").status(), 201);
    assert_eq!(api.messages(&id).unwrap(), vec!["still here"]);
}

#[test]
fn a_core_that_keeps_crashing_makes_the_launcher_stop_and_say_why() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let redis_pid = home.instance().unwrap().redis.pid;
    let mut last = 0;
    // Kill every core the launcher starts until it gives up.
    let status = loop {
        if let Some(status) = launcher.try_exit() {
            break status;
        }
        if let Some(i) = home.instance()
            && i.core.pid != last
            && alive(i.core.pid)
        {
            last = i.core.pid;
            signal(last, Signal::Kill);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let stderr = launcher.stderr();
    assert!(stderr.contains("jarvis-core failed 5 times"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!alive(redis_pid), "Redis is stopped with the launcher");
    assert!(!home.path("run/instance.json").exists());
}
