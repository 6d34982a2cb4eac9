//! A Redis blip while the platform runs: every client connection dropped at
//! once. The services' watch loops look again next round instead of dying,
//! so Redis losing its data afterwards is still noticed and rebuilt. (Its
//! own test binary: the blip drops every connection of the Redis server.)

use std::time::Duration;
use whistle_proto::v1 as pb;
use whistle_tests::{Platform, request};

const WAIT: Duration = Duration::from_secs(60);

/// Drops every normal client connection of the Redis server, as a restart would.
async fn blip(p: &Platform) {
    let client = redis::Client::open(p.redis.url.expose().as_str()).expect("redis");
    let mut c = client.get_multiplexed_async_connection().await.expect("redis connect");
    let dropped: Result<i64, _> = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query_async(&mut c).await;
    // Our own connection goes too, so the answer may never come.
    if let Ok(n) = dropped {
        assert!(n > 0, "no connections to drop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_blip_does_not_stop_the_watch_loops() {
    let p = Platform::start("blip").await;
    let t = p.intake().await.submit_request(request("自来水管漏水了", "东城区景山")).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    let done = pb::CompleteRequest { ticket: t.ticket_number.clone(), unit: String::new(), result: "已更换".into() };
    p.desk_as("unit:city-water").await.complete(done).await.expect("complete");
    p.wait_revisit_queued("agent:wang", &t.ticket_number, true).await;

    blip(&p).await;
    // Every watch loop meets the dropped connection on its next look (within 2 s)...
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // ...and then Redis loses the data: it comes back from the topic.
    p.wipe_projection().await;
    p.wipe_revisits().await;
    p.wait_key("projection:alive", WAIT).await;
    p.wait_key("revisit:alive", WAIT).await;
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "completed").await;
    p.wait_revisit_queued("agent:wang", &t.ticket_number, true).await;
    p.shutdown().await;
}
