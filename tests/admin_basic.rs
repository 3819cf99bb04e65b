//! The admin client against the embedded server, on both backends.

mod common;

use std::time::Duration;

use common::{backends, conn};
use lnc_uring::proto::{Retention, ServerErrorKind};
use lnc_uring::testkit::{Fault, TestServer};
use lnc_uring::{Error, FetchOutcome, LanceClient, Producer, ProducerConfig};

#[test]
fn topic_lifecycle() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let admin = LanceClient::with_config(conn(&server, backend)).unwrap();
        let a = admin.create_topic("alpha").unwrap();
        assert_eq!((a.id, a.name.as_str(), a.topic_epoch), (1, "alpha", 1));
        let e = admin.create_topic("alpha").unwrap_err();
        assert!(
            matches!(&e, Error::Server(s) if s.kind == ServerErrorKind::TopicExists),
            "{e}"
        );
        assert_eq!(admin.ensure_topic("alpha").unwrap().id, 1);
        assert_eq!(admin.ensure_topic("beta").unwrap().id, 2);
        assert!(matches!(
            admin.create_topic("bad name"),
            Err(Error::InvalidTopicName { .. })
        ));
        let r = admin
            .create_topic_with_retention(
                "gamma",
                Retention::UNLIMITED.with_max_age(Duration::from_secs(60)),
            )
            .unwrap();
        assert_eq!(r.retention().unwrap().max_age_secs, 60);
        assert!(matches!(
            admin.set_retention(
                1,
                Retention {
                    max_age_secs: 0,
                    max_bytes: 10
                }
            ),
            Err(Error::Config(_))
        ));
        let set = admin.set_retention(1, Retention::UNLIMITED).unwrap();
        assert_eq!(set.max_bytes, u64::MAX);
        let mut names: Vec<_> = admin
            .list_topics()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        assert_eq!(names, ["alpha", "beta", "gamma"]);
        assert_eq!(admin.get_topic(2).unwrap().name, "beta");
        assert!(matches!(
            admin.get_topic(99),
            Err(Error::TopicNotFound { .. })
        ));
        assert_eq!(admin.delete_topic(2).unwrap(), 2);
        assert!(matches!(
            admin.delete_topic(2),
            Err(Error::TopicNotFound { .. })
        ));
        let s = admin.cluster_status().unwrap();
        assert!(s.is_leader && s.is_standalone());
        assert!(admin.ping().unwrap() < Duration::from_secs(1));
        admin.close();
    }
}

#[test]
fn raw_fetch_end_offset_and_catching_up() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let admin = LanceClient::with_config(conn(&server, backend)).unwrap();
        let t = admin.create_topic("t").unwrap().id;
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        p.send(t, b"hello").unwrap();
        p.send(t, b"world").unwrap();
        assert_eq!(admin.end_offset(t).unwrap(), 20);
        // A fetch that cuts a record: raw bytes, as the server sends them.
        match admin.fetch(t, 0, 12).unwrap() {
            FetchOutcome::Data { next_offset, data } => {
                assert_eq!((next_offset, data.len()), (12, 12));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            admin.fetch(t, 25, 100).unwrap(),
            FetchOutcome::CatchingUp { server_offset: 20 }
        );
        assert!(matches!(
            admin.fetch(77, 0, 100),
            Err(Error::TopicNotFound { .. })
        ));
        p.close(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn requests_survive_split_replies_and_a_reconnect() {
    for backend in backends() {
        let server = TestServer::start().unwrap();
        let admin = LanceClient::with_config(conn(&server, backend)).unwrap();
        server.faults().inject(Fault::SplitWrites {
            max_piece: 3,
            pause: Duration::ZERO,
        });
        admin.create_topic("one").unwrap();
        assert_eq!(admin.list_topics().unwrap().len(), 1);
        server.faults().clear();
        server.restart().unwrap();
        // The first request after the cut may fail with a retryable error; the next works.
        let r = admin.list_topics();
        if let Err(e) = &r {
            assert!(e.is_retryable(), "{e}");
        }
        assert_eq!(admin.list_topics().unwrap().len(), 1);
    }
}

#[test]
fn authentication_on_every_connection() {
    for backend in backends() {
        let server = TestServer::builder()
            .auth_tokens(["secret"])
            .start()
            .unwrap();
        let t = server.create_topic("t");
        // Without a token, ingest is refused with a typed error.
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(conn(&server, backend)),
        )
        .unwrap();
        assert!(matches!(p.send(t, b"x"), Err(Error::Authentication { .. })));
        drop(p);
        // With the token: accepted, and again after the server cuts the connection.
        let c = conn(&server, backend).with_auth_token("secret");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(c),
        )
        .unwrap();
        p.send(t, b"a").unwrap();
        server.restart().unwrap();
        p.send(t, b"b").unwrap();
        p.close(Duration::from_secs(5)).unwrap();
        // A wrong token: a clear error, no retry storm.
        let c = conn(&server, backend).with_auth_token("wrong");
        let p = Producer::with_config(
            ProducerConfig::default()
                .with_linger_ms(0)
                .with_connection(c),
        )
        .unwrap();
        let e = p.send(t, b"c").unwrap_err();
        assert!(
            matches!(&e, Error::Authentication { message } if message.contains("Invalid token")),
            "{e}"
        );
    }
}
