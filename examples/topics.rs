//! Topic management, as in the seed clients' quick start, in blocking Rust.
//!
//! ```sh
//! cargo run --example topics                        # embedded server
//! LANCE_ADDR=127.0.0.1:1992 cargo run --example topics
//! ```

use std::time::Duration;

use lnc_uring::proto::Retention;
use lnc_uring::testkit::TestServer;
use lnc_uring::LanceClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_server, addr) = match std::env::var("LANCE_ADDR") {
        Ok(a) => (None, a),
        Err(_) => {
            let s = TestServer::start()?;
            let a = s.addr().to_string();
            (Some(s), a)
        }
    };
    let admin = LanceClient::connect(&addr)?;
    println!("ping {:?}", admin.ping()?);
    println!("{:?}", admin.cluster_status()?);

    let orders = admin.ensure_topic("orders")?;
    // Retention: a week, no size limit. (0 would mean "delete every closed segment".)
    let week = Retention::UNLIMITED.with_max_age(Duration::from_secs(7 * 86_400));
    let audit = admin.create_topic_with_retention("audit-log", week)?;
    admin.set_retention(orders.id, Retention::UNLIMITED.with_max_bytes(10 << 30))?;
    for t in admin.list_topics()? {
        println!("{:>4}  {}", t.id, t.name);
    }
    admin.delete_topic(audit.id)?;
    admin.close();
    Ok(())
}
