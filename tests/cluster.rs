//! Cluster behaviour: seed failover, NOT_LEADER redirects, FORWARD_FAILED retries, on
//! both backends (two embedded servers stand in for two nodes).

mod common;

use std::time::Duration;

use common::{backends, conn, stored_values};
use lnc_uring::testkit::{Fault, TestServer};
use lnc_uring::{ConnectionConfig, LanceClient, Producer, ProducerConfig};

#[test]
fn a_dead_seed_is_skipped() {
    for backend in backends() {
        let live = TestServer::start().unwrap();
        let t = live.create_topic("t");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let c = ConnectionConfig::new(dead_addr)
            .with_seed(live.addr().to_string())
            .with_backend(backend);
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(c),
        )
        .unwrap();
        p.send(t, b"via the second seed").unwrap();
        assert_eq!(stored_values(&live, t), [b"via the second seed".to_vec()]);
        assert!(p.stats().driver.connect_failures >= 1);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn not_leader_redirects_the_producer() {
    for backend in backends() {
        let follower = TestServer::start().unwrap();
        let leader = TestServer::start().unwrap();
        let t = follower.create_topic("t");
        assert_eq!(leader.create_topic("t"), t);
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&follower, backend)),
        )
        .unwrap();
        p.send(t, b"on the follower").unwrap();
        follower.faults().inject(Fault::not_leader(leader.addr()));
        let m = p.send(t, b"on the leader").unwrap();
        assert!(m.attempts >= 2, "{backend}");
        assert_eq!(
            stored_values(&leader, t),
            [b"on the leader".to_vec()],
            "{backend}"
        );
        assert_eq!(stored_values(&follower, t), [b"on the follower".to_vec()]);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn forward_failed_and_leader_not_ready_are_retried() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        server.faults().inject(Fault::RejectIngest {
            text: "FORWARD_FAILED: Leader not ready (apply/metadata catch-up)".into(),
            skip: 0,
            count: 3,
        });
        p.send(t, b"eventually").unwrap();
        assert_eq!(stored_values(&server, t), [b"eventually".to_vec()]);
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn admin_requests_retry_through_a_lost_connection() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let admin = LanceClient::with_config(conn(&server, backend)).unwrap();
        admin.create_topic("a").unwrap();
        server.restart().unwrap();
        // The first request after the cut meets a closed connection and is retried.
        assert_eq!(admin.list_topics().unwrap().len(), 1, "{backend}");
        admin.close();
    }
}

#[test]
fn admin_fails_over_to_the_next_seed() {
    let first = TestServer::start().unwrap();
    let second = TestServer::start().unwrap();
    second.create_topic("existing");
    let c = ConnectionConfig::new(first.addr().to_string()).with_seed(second.addr().to_string());
    first.stop();
    let admin = LanceClient::with_config(c).unwrap();
    assert_eq!(admin.list_topics().unwrap()[0].name, "existing");
    admin.close();
}

#[test]
fn a_token_is_not_sent_to_a_redirect_target_nobody_named() {
    for backend in backends() {
        let follower = TestServer::builder()
            .auth_tokens(["secret"])
            .start()
            .unwrap();
        let stranger = TestServer::builder()
            .auth_tokens(["secret"])
            .start()
            .unwrap();
        let t = follower.create_topic("t");
        assert_eq!(stranger.create_topic("t"), t);
        let cfg = |auth_on_redirect| {
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_max_retries(2)
                .with_delivery_timeout(Duration::from_secs(3))
                .with_connection(
                    conn(&follower, backend)
                        .with_auth_token("secret")
                        .with_auth_on_redirect(auth_on_redirect),
                )
        };
        // Default: not followed (the token would go to a host not configured); the
        // batch fails with the redirect after its retries.
        let p = Producer::with_config(cfg(false)).unwrap();
        follower.faults().inject(Fault::RejectIngest {
            text: format!("NOT_LEADER: redirect to {}", stranger.addr()),
            skip: 0,
            count: u32::MAX,
        });
        assert!(p.send(t, b"stays").is_err(), "{backend}");
        assert_eq!(stranger.stats().connections_accepted, 0, "{backend}");
        drop(p);
        // Allowed explicitly: followed, with the token.
        let p = Producer::with_config(cfg(true)).unwrap();
        p.send(t, b"moves").unwrap();
        assert_eq!(
            stored_values(&stranger, t),
            [b"moves".to_vec()],
            "{backend}"
        );
        follower.faults().clear();
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn a_redirect_loop_backs_off() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let t = server.create_topic("t");
        // The server keeps redirecting to itself.
        server.faults().inject(Fault::RejectIngest {
            text: format!("NOT_LEADER: redirect to {}", server.addr()),
            skip: 0,
            count: u32::MAX,
        });
        let p =
            Producer::with_config(
                ProducerConfig::default()
                    .with_linger_ms(0)
                    .with_max_retries(1000)
                    .with_delivery_timeout(Duration::from_millis(1500))
                    .with_connection(conn(&server, backend).with_reconnect_backoff(
                        Duration::from_millis(50),
                        Duration::from_millis(400),
                    )),
            )
            .unwrap();
        assert!(p.send(t, b"x").is_err());
        // Without back-off this would reconnect hundreds of times in 1.5 s.
        let accepted = server.stats().connections_accepted;
        assert!(accepted < 30, "{backend}: {accepted} connections");
        server.faults().clear();
    }
}
