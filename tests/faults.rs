//! The known fault paths, each on the real broker and Redis: what used to
//! stall, lose or leak, and now does not.

use std::collections::BTreeSet;
use std::time::Duration;
use whistle_domain::{
    Actor, Contact, Event, EventId, EventKind, Location, OverdueLevel, Request, RevisitOutcome, TicketId, TicketNumber, UnitCode,
};
use whistle_proto::v1 as pb;
use whistle_tests::webhook::is;
use whistle_tests::{Platform, request};

const WAIT: Duration = Duration::from_secs(60);

fn event(ticket: TicketId, id: EventId, kind: EventKind) -> Event {
    Event { id, ticket_id: ticket, occurred_at: time::macros::datetime!(2026-11-23 10:00 +08:00), actor: Actor::system("test"), kind }
}

/// Tickets on every partition of the events topic, published as an
/// outside system's `received` events.
async fn tickets_on_every_partition(p: &Platform) -> Vec<TicketId> {
    let mut tickets = Vec::new();
    for n in 1..=60 {
        let t = TicketId::new();
        let r = Request::parse("external", "", "路灯坏了", Location::default(), Contact::default(), "zh").expect("request");
        let number = TicketNumber::parse(&format!("202611239{n:05}")).expect("number");
        p.publish_event(&event(t, EventId::new(), EventKind::Received { number, request: r })).await;
        tickets.push(t);
        if n % 10 == 0 {
            let partitions: BTreeSet<i32> = p.read_topic(&p.topics().events()).await.iter().map(|m| m.partition).collect();
            if partitions.len() == 6 {
                return tickets;
            }
        }
    }
    panic!("60 tickets did not cover the 6 partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_does_not_stall_its_partition() {
    let p = Platform::start("repeat").await;
    // The same overdue event twice (a timer fired again after a kill -9), on
    // every partition.
    let tickets = tickets_on_every_partition(&p).await;
    for t in &tickets {
        let overdue = EventKind::Overdue {
            level: OverdueLevel::First,
            deadline_version: EventId::new(),
            due_at: time::macros::datetime!(2026-11-23 09:00 +08:00),
            unit: UnitCode::parse("city-water").expect("unit"),
        };
        let e = event(*t, EventId::new(), overdue);
        p.publish_event(&e).await;
        p.publish_event(&e).await;
    }
    // Everything after them still flows: a new request's citizen is told.
    let t = p.intake().await.submit_request(request("自来水发黄，还有股铁锈味", "西城区金融街")).await.expect("submit").into_inner();
    let told = p.sms.wait_for(1, WAIT, is("ticket_received", &t.ticket_number)).await;
    assert_eq!(told.len(), 1, "the received SMS of a ticket behind a repeated event");
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_their_reasons_hold_no_citizen_contact() {
    use prost::Message;
    let p = Platform::start("dlq-contact").await;
    // An outside system's request that cannot be a ticket (latitude 100), with the citizen's contact.
    let bad = r#"{"channel":"grid","external_id":"g-contact-1","text":"路灯坏了","citizen_name":"张三丰","citizen_phone":"13812345678","lat":100.0,"lon":116.4}"#;
    p.publish_to(&p.topics().intake_requests(), "g-contact-1", bad.as_bytes()).await;
    // A ticket event that does not validate (its number is not one), with a contact inside.
    let t = TicketId::new();
    let e = whistle_proto::v1::TicketEvent {
        schema_version: 1,
        event_id: EventId::new().to_string(),
        ticket_id: t.to_string(),
        occurred_at: Some(whistle_proto::timestamp(time::macros::datetime!(2026-11-23 10:00 +08:00))),
        actor: Some(whistle_proto::v1::Actor { kind: "system".into(), id: "test".into() }),
        body: Some(whistle_proto::v1::ticket_event::Body::Received(whistle_proto::v1::Received {
            ticket_number: "not-a-number".into(),
            channel: "phone".into(),
            text: "我叫李四，电话13912345678，楼道漏水".into(),
            contact: Some(whistle_proto::v1::Contact {
                name: "李四".into(), phone: "13912345678".into(), email: "lisi@example.cn".into()
            }),
            ..Default::default()
        })),
    };
    p.publish_raw(&t.to_string(), &e.encode_to_vec()).await;
    // Intake's topic consumer, and every consumer group of the events topic, set them aside.
    let dead = p.wait_dead_letters(8, WAIT, |_| true).await;
    assert!(dead.len() >= 8, "{} dead letters", dead.len());
    for d in &dead {
        let all = format!("{} {:?}", String::from_utf8_lossy(&d.payload), d.headers);
        for secret in ["13812345678", "张三丰", "13912345678", "李四", "lisi@"] {
            assert!(!all.contains(secret), "a dead letter of {:?} holds {secret}: {all}", d.headers.get("dlq-service"));
        }
    }
    // What was wrong is still said.
    let intake = dead.iter().find(|d| d.headers.get("dlq-service").map(String::as_str) == Some("intake")).expect("intake's");
    assert!(intake.headers["dlq-reason"].contains("lat"), "{:?}", intake.headers);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_too_big_to_dead_letter_whole_does_not_stall_its_partition() {
    let p = Platform::start("dlq-size").await;
    // The biggest message the producer takes: not an event, so every
    // consumer dead-letters it, and with the reason's headers it no longer
    // fits.
    let producer = whistle_runtime::EventProducer::new(&p.kafka).expect("producer");
    let topic = p.topics().events();
    let mut size = 1_000_000;
    let mut keys = Vec::new();
    let mut partitions = BTreeSet::new();
    while partitions.len() < 6 {
        let key = TicketId::new().to_string();
        let payload = vec![0xffu8; size];
        match producer.send(&topic, Some(key.as_bytes()), &payload, rdkafka::message::OwnedHeaders::new()).await {
            Ok(at) => {
                if partitions.insert(at.partition) {
                    keys.push(key);
                }
            }
            Err(_) => {
                size -= 100;
                assert!(size > 900_000, "the producer took no message near its limit");
            }
        }
        assert!(keys.len() <= 6 && size > 900_000);
    }
    let published = size;
    // What comes after it on every partition still flows.
    let t = p.intake().await.submit_request(request("自来水发黄，还有股铁锈味", "西城区金融街")).await.expect("submit").into_inner();
    let told = p.sms.wait_for(1, WAIT, is("ticket_received", &t.ticket_number)).await;
    assert_eq!(told.len(), 1, "the received SMS of a ticket behind a too-big poison message");
    // And the poison is set aside, cut to what fits, saying so.
    let ours = |m: &whistle_tests::Raw| keys.iter().any(|k| m.key.as_deref() == Some(k.as_bytes()));
    let dead = p.wait_dead_letters(7 * 6, WAIT, ours).await;
    assert_eq!(dead.len(), 7 * 6, "every consumer group of the events topic, every partition");
    for d in &dead {
        assert_eq!(d.headers.get("dlq-truncated").map(String::as_str), Some(published.to_string().as_str()), "{:?}", d.headers);
        assert!(d.payload.len() < published);
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_is_kept_forever_and_a_topic_that_would_expire_it_is_refused() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let infra = whistle_tests::infra();
    let kafka = |prefix: &str| whistle_runtime::KafkaConfig {
        brokers: infra.brokers.clone(),
        topic_prefix: prefix.to_owned(),
        group_prefix: prefix.to_owned(),
        create_topics: true,
        ..Default::default()
    };
    // Created by the project: kept forever, with the in-sync replicas asked.
    let good = kafka(&whistle_tests::unique_prefix("retention-good"));
    whistle_runtime::topics::prepare(&good).await.expect("created and checked");
    let admin: AdminClient<DefaultClientContext> = whistle_runtime::kafka::client_config(&good).create().expect("admin");
    let events = whistle_runtime::Topics::new(&good).events();
    let described = admin.describe_configs(&[ResourceSpecifier::Topic(&events)], &AdminOptions::new()).await.expect("describe");
    let config = described.into_iter().next().expect("one").expect("the topic's config");
    assert_eq!(config.get("retention.ms").and_then(|e| e.value.as_deref()), Some("-1"));
    assert_eq!(config.get("min.insync.replicas").and_then(|e| e.value.as_deref()), Some("1"));
    // Made elsewhere with the broker's default of seven days: refused at start, saying why.
    let bad = whistle_runtime::KafkaConfig { create_topics: false, ..kafka(&whistle_tests::unique_prefix("retention-bad")) };
    let topic = whistle_runtime::Topics::new(&bad).events();
    let week = NewTopic::new(&topic, 6, TopicReplication::Fixed(1)).set("retention.ms", "604800000");
    for r in admin.create_topics(&[week], &AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
    let e = whistle_runtime::topics::prepare(&bad).await.expect_err("a record that expires");
    assert!(e.to_string().contains("retention.ms is 604800000 but must be -1"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifier_replicas_send_the_monthly_summary_once() {
    let mut p = Platform::start_with("summary-twice", whistle_tests::Options { summary: true, ..Default::default() }).await;
    p.start_notifier_named("notifier-2").await;
    p.clock.set(time::macros::datetime!(2026-12-01 09:00 +08:00));
    let heads = 183;
    let summaries = |m: &serde_json::Value| m["template"] == "monthly_summary";
    let got = p.sms.wait_for(heads, WAIT, summaries).await;
    assert_eq!(got.len(), heads, "every head told");
    // Both replicas have had time to finish: still once per head.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = p.sms.messages(summaries);
    let recipients: BTreeSet<String> = all.iter().map(|m| m["recipient"]["id"].to_string()).collect();
    assert_eq!((all.len(), recipients.len()), (heads, heads), "each head once, not once per replica");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_the_end_of_time_is_dead_lettered_and_the_service_goes_on() {
    let p = Platform::start("panic").await;
    // Crafted: a ticket completed at the very end of time. Adding the
    // revisit's working day to it, or finding its day, cannot be done (it
    // used to panic the revisit's consumers).
    let crafted = TicketId::new();
    let mut end_of_time = event(crafted, EventId::new(), EventKind::Completed { result: "已处理".into() });
    end_of_time.occurred_at = time::macros::datetime!(9999-12-31 23:59 UTC);
    p.publish_event(&end_of_time).await;
    let dead = p
        .wait_dead_letters(1, WAIT, |m| {
            m.key.as_deref() == Some(crafted.to_string().as_bytes()) && m.headers.get("dlq-service").map(String::as_str) == Some("revisit")
        })
        .await;
    assert!(!dead[0].headers["dlq-reason"].is_empty());
    // The revisit service still follows the topic: a real ticket completed now is revisited.
    let t = p.intake().await.submit_request(request("自来水管漏水了", "东城区景山")).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned" && v.unit == "city-water").await;
    let done = whistle_proto::v1::CompleteRequest { ticket: t.ticket_number.clone(), unit: String::new(), result: "已更换".into() };
    p.desk_as("unit:city-water").await.complete(done).await.expect("complete");
    p.wait_revisit_queued("agent:wang", &t.ticket_number, true).await;
    p.shutdown().await;
}

/// A handler that panics on the message `boom` and keeps what it handled.
struct PanicsOnBoom(std::sync::Mutex<Vec<Vec<u8>>>);

impl whistle_runtime::consumer::Handler for PanicsOnBoom {
    async fn handle(&self, m: &whistle_runtime::consumer::Incoming) -> Result<(), whistle_runtime::consumer::HandleError> {
        let payload = m.payload.clone().unwrap_or_default();
        assert!(payload != b"boom", "boom");
        self.0.lock().unwrap().push(payload);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_has_its_message_dead_lettered_and_the_partition_goes_on() {
    let p = Platform::start("panics").await;
    let topic = p.topics().intake_requests();
    let handled = std::sync::Arc::new(PanicsOnBoom(Default::default()));
    let ops = whistle_runtime::Ops::new("panics");
    let settings = whistle_runtime::consumer::ConsumerSettings::new(&ops, "panics-test", vec![topic.clone()]);
    let shutdown = whistle_runtime::Shutdown::new();
    let dlq = whistle_runtime::EventProducer::new(&p.kafka).expect("producer");
    let consumer = whistle_runtime::consumer::spawn("panics", &p.kafka, settings, handled.clone(), dlq, &shutdown);
    // One key, so one partition: the message after the panic must still come.
    p.publish_to(&topic, "k", b"boom").await;
    p.publish_to(&topic, "k", b"after").await;
    let dead =
        p.wait_dead_letters(1, WAIT, |m| m.payload == b"boom" && m.headers.get("dlq-service").map(String::as_str) == Some("panics")).await;
    assert_eq!(dead[0].headers["dlq-reason"], "the handler panicked: boom");
    whistle_tests::eventually("the message after the panic handled", WAIT, Duration::from_millis(50), || async {
        let seen = handled.0.lock().unwrap().clone();
        if seen.contains(&b"after".to_vec()) { Ok(()) } else { Err(seen) }
    })
    .await;
    assert!(!shutdown.is_triggered(), "the consumer goes on");
    // And the metrics say why it went to the dead-letter topic.
    let counted = format!("whistle_dead_letters_total{{group=\"{}panics-test\",reason=\"panicked\"}} 1", p.prefix);
    assert!(ops.render().lines().any(|l| l == counted), "{counted} in:\n{}", ops.render());
    shutdown.trigger();
    consumer.await.expect("joined").expect("drained");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_mid_run_reuses_no_number_and_loses_no_ticket() {
    let mut p = Platform::start("flush").await;
    // Two intake replicas: both see the loss and rebuild at once.
    p.start_intake_named("intake-2").await;
    let intake = p.intake().await;
    // Water leaks in six districts, three at most in one place (a sixth
    // report there would be a difficult whistle, left to the district).
    let places = ["东城区景山", "西城区金融街", "海淀区中关村", "朝阳区望京", "丰台区方庄", "石景山区鲁谷"];
    let mut before = Vec::new();
    for i in 0..12 {
        let t = intake.clone().submit_request(request("水管漏水了，家里到处是水", places[i % 6])).await.expect("submit").into_inner();
        before.push(t);
    }
    for t in &before {
        let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
        assert_eq!(v.unit, "city-water");
    }

    // Redis loses everything; at once, six new calls come in and the unit
    // completes an old ticket.
    p.wipe_everything().await;
    let first = before[0].ticket_number.clone();
    let mut desk = p.desk_as("unit:city-water").await;
    let complete = desk.complete(pb::CompleteRequest { ticket: first.clone(), unit: String::new(), result: "修好了".into() });
    let calls = futures::future::join_all(places.iter().map(|place| {
        let mut intake = intake.clone();
        async move { intake.submit_request(request("水管又漏水了", place)).await }
    }));
    let (done, after) = tokio::join!(complete, calls);
    done.expect("the unit completes a ticket while Redis is rebuilt");
    let after: Vec<pb::SubmitRequestResponse> =
        after.into_iter().map(|r| r.expect("a call while Redis is rebuilt is registered").into_inner()).collect();

    // Every number once, each naming its own ticket.
    let numbers: BTreeSet<&str> = before.iter().chain(&after).map(|t| t.ticket_number.as_str()).collect();
    assert_eq!(numbers.len(), 18, "a number was issued twice: {numbers:?}");
    for t in before.iter().chain(&after).skip(1) {
        let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
        assert_eq!((v.ticket_id.as_str(), v.unit.as_str()), (t.ticket_id.as_str(), "city-water"), "ticket {}", t.ticket_number);
    }
    let v = p.wait_ticket(&first, WAIT, |v| v.state == "completed").await;
    assert_eq!(v.ticket_id, before[0].ticket_id);
    assert_eq!(p.sms.wait_for(1, WAIT, is("ticket_completed", &first)).await.len(), 1);
    for t in &after {
        p.sms.wait_for(1, WAIT, is("ticket_received", &t.ticket_number)).await;
    }
    // Nothing was refused on the way.
    let dead = p.read_topic(&p.topics().dead_letter()).await;
    let reasons: Vec<&String> = dead.iter().filter_map(|m| m.headers.get("dlq-reason")).collect();
    assert!(dead.is_empty(), "dead-lettered: {reasons:?}");
    p.shutdown().await;
}

/// A redis-server of the test's own, on `port`, keeping its data in `dir`
/// as `dump.rdb` (loaded at start, written by SAVE); killed when dropped,
/// also when the test fails.
struct OwnRedis(std::process::Child);

impl OwnRedis {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"])
            .arg("--dir")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        OwnRedis(child)
    }

    /// kill -9, and wait until it is gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn redis_up(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    whistle_tests::eventually("the test's redis-server up", WAIT, Duration::from_millis(50), || {
        let client = client.clone();
        async move { client.get_multiplexed_async_connection().await.map_err(|e| e.to_string()) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_its_last_writes_is_rebuilt_not_trusted() {
    let dir = std::env::temp_dir().join(format!("whistle-redis-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("redis dir");
    let port = whistle_tests::free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut server = OwnRedis::start(port, &dir);
    let mut admin = redis_up(&url).await;
    let p = Platform::start_with("restart", whistle_tests::Options { redis_url: Some(url.clone()), ..Default::default() }).await;
    let places = ["东城区景山", "西城区金融街", "海淀区中关村"];
    let submit = |i: usize| {
        let p = &p;
        async move {
            p.intake().await.submit_request(request("水管漏水了，家里到处是水", places[i % 3])).await.expect("submit").into_inner()
        }
    };
    let mut synced = Vec::new();
    for i in 0..3 {
        synced.push(submit(i).await);
    }
    for t in &synced {
        p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    }
    // An assigned ticket's three timers: warning, first and second overdue.
    let timers = 3;
    for t in &synced {
        p.wait_timers(&t.ticket_id, timers, WAIT).await;
    }
    // What Redis has on disk now; the next writes are "the last second"
    // that a crash of Redis (append-only file synced every second) loses.
    let _: () = redis::cmd("SAVE").query_async(&mut admin).await.expect("save");
    std::fs::copy(dir.join("dump.rdb"), dir.join("synced.rdb")).expect("keep the synced data");
    let mut unsynced = Vec::new();
    for i in 0..2 {
        unsynced.push(submit(i).await);
    }
    for t in &unsynced {
        p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    }
    server.kill();
    std::fs::copy(dir.join("synced.rdb"), dir.join("dump.rdb")).expect("restore");
    let server = OwnRedis::start(port, &dir);
    redis_up(&url).await;

    // Redis came back without them: the services rebuild, they do not trust
    // it. (The first call may meet the connection Redis dropped: "nothing was
    // registered; retry", as a phone agent would.)
    let next = whistle_tests::eventually("a call registered after the restart", WAIT, Duration::from_millis(200), || async {
        let r = p.intake().await.submit_request(request("水管漏水了，家里到处是水", places[2])).await;
        match r {
            Ok(t) => Ok(t.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable => Err(s.to_string()),
            Err(s) => panic!("refused: {s}"),
        }
    })
    .await;
    let numbers: BTreeSet<&str> = synced.iter().chain(&unsynced).chain([&next]).map(|t| t.ticket_number.as_str()).collect();
    assert_eq!(numbers.len(), 6, "a number was issued twice after the restart: {numbers:?}");
    for t in unsynced.iter().chain([&next]) {
        let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
        assert_eq!(v.ticket_id, t.ticket_id);
        p.wait_timers(&t.ticket_id, timers, WAIT).await;
    }
    p.sms.wait_for(1, WAIT, is("ticket_received", &next.ticket_number)).await;
    let dead = p.read_topic(&p.topics().dead_letter()).await;
    let reasons: Vec<&String> = dead.iter().filter_map(|m| m.headers.get("dlq-reason")).collect();
    assert!(dead.is_empty(), "dead-lettered: {reasons:?}");
    p.shutdown().await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_judges_who_acts_and_no_service_acts_on_what_it_refused() {
    let p = Platform::start("judge").await;
    let t = p.intake().await.submit_request(request("水管漏水了，家里到处是水", "东城区景山")).await.expect("submit").into_inner();
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    assert_eq!(v.unit, "city-water");
    let due = p.wait_due(&t.ticket_id, WAIT, |d| d.len() == 3).await;
    let id = TicketId::parse(&t.ticket_id).expect("ticket id");

    // Written from a stale view: a district dispatching a ticket the city
    // holds, and a unit completing a ticket it does not hold.
    let at = time::macros::datetime!(2026-11-23 10:05 +08:00);
    let deadline = whistle_domain::Deadline {
        due_at: at + time::Duration::hours(1),
        second_due_at: at + time::Duration::hours(2),
        warn_at: None,
        span: time::Duration::hours(1),
        version: EventId::new(),
    };
    let stale_dispatch = EventKind::Dispatched {
        platform: whistle_domain::PlatformId::County("xicheng".into()),
        unit: UnitCode::parse("xicheng-environment").expect("unit"),
        deadline,
        automatic: true,
    };
    p.publish_event(&Event { actor: Actor::system("dispatcher:county:xicheng"), ..event(id, EventId::new(), stale_dispatch) }).await;
    let stale_complete = EventKind::Completed { result: "不是我们的，但先办结".into() };
    let e = Event { actor: Actor::unit(&UnitCode::parse("city-ecology").expect("unit")), ..event(id, EventId::new(), stale_complete) };
    let last = whistle_runtime::EventProducer::new(&p.kafka).expect("producer").publish(&e).await.expect("publish");
    for group in ["sla-timer", "notifier", "dispatcher-city", "revisit"] {
        p.wait_handled(group, &last).await;
    }

    // Refused, and nothing followed from them: the unit's timers stand, no
    // district unit was told, the citizen was not told it is done.
    assert_eq!(p.due_of(&t.ticket_id).await, due, "the timers of the real assignment");
    assert!(
        p.webhook.messages(|m| m["ticket_number"] == t.ticket_number.as_str() && m["recipient"]["id"] == "xicheng-environment").is_empty()
    );
    assert!(p.sms.messages(is("ticket_completed", &t.ticket_number)).is_empty(), "the citizen told of a refused completion");
    let desk = p.desk_as("unit:city-water").await.history(pb::TicketRef { ticket: t.ticket_number.clone() }).await;
    let history = desk.expect("the unit reads its ticket").into_inner().entries;
    let refused: Vec<&str> = history.iter().filter(|h| !h.refused.is_empty()).map(|h| h.event.as_str()).collect();
    assert_eq!(refused, ["dispatched", "completed"], "{history:?}");

    // The unit holding it completes it.
    p.complete_as("city-water", &t.ticket_number, "修好了").await;
    assert_eq!(p.sms.wait_for(1, WAIT, is("ticket_completed", &t.ticket_number)).await.len(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revisit_on_record_without_its_consequence_still_closes_or_reopens_the_ticket() {
    let p = Platform::start("half-revisit").await;
    let mut numbers = Vec::new();
    for place in ["东城区景山", "西城区金融街"] {
        let t = p.submit_assigned(request("水管漏水了，家里到处是水", place)).await;
        p.complete_as("city-water", &t.ticket_number, "修好了").await;
        p.wait_revisit_queued("agent:wang", &t.ticket_number, true).await;
        numbers.push(t);
    }
    // As if the revisit service died right after publishing each attempt:
    // the attempt is on record, its consequence is not.
    for (t, outcome) in numbers.iter().zip([RevisitOutcome::Satisfied, RevisitOutcome::Unsatisfied]) {
        let id = TicketId::parse(&t.ticket_id).expect("ticket id");
        let kind = EventKind::RevisitRecorded { outcome, reason: "还是漏".into() };
        p.publish_event(&Event { actor: Actor::agent("wang"), ..event(id, EventId::new(), kind) }).await;
    }
    p.wait_ticket(&numbers[0].ticket_number, WAIT, |v| v.state == "closed").await;
    let v = p.wait_ticket(&numbers[1].ticket_number, WAIT, |v| v.state == "assigned" && v.rework_count == 1).await;
    assert_eq!(v.unit, "city-water", "reopened at the same unit");
    // Each consequence once, though the follower and a retry may both publish it.
    for (t, kind) in numbers.iter().zip(["closed", "reopened"]) {
        let ids: BTreeSet<EventId> = p.events_for(&t.ticket_id).await.iter().filter(|e| e.kind.name() == kind).map(|e| e.id).collect();
        assert_eq!(ids.len(), 1, "{kind} of ticket {}", t.ticket_number);
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_extended_while_the_sla_timer_was_down_gets_no_reminder_for_the_old_one() {
    let mut p = Platform::start("down-extension").await;
    let t = p.intake().await.submit_request(request("水管漏水了，家里到处是水", "东城区景山")).await.expect("submit").into_inner();
    let v = p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    let china = |ts: &Option<whistle_proto::prost_types::Timestamp>| {
        whistle_proto::to_datetime(ts.as_ref().expect("deadline")).expect("time").to_offset(time::macros::offset!(+8))
    };
    let old = china(&v.deadline);
    p.wait_due(&t.ticket_id, WAIT, |d| d.len() == 3).await;

    // The sla-timer is down while the unit asks for three more days and
    // the city grants them.
    p.stop("sla-timer").await;
    let new = old + time::Duration::days(3);
    p.desk_as("unit:city-water")
        .await
        .request_extension(pb::ExtensionRequest {
            ticket: t.ticket_number.clone(),
            reason: "需要更换主管道".into(),
            requested_due_at: Some(whistle_proto::timestamp(new)),
        })
        .await
        .expect("request");
    p.desk_as("city")
        .await
        .decide_extension(pb::ExtensionDecision {
            ticket: t.ticket_number.clone(),
            grant: true,
            due_at: Some(whistle_proto::timestamp(new)),
            note: "同意".into(),
        })
        .await
        .expect("grant");
    p.wait_ticket(&t.ticket_number, WAIT, |v| china(&v.deadline) == new).await;

    // The old deadline passes before it is back: it catches up before it
    // fires, so the old timers are replaced and none of them fires.
    p.clock.set(old + time::Duration::minutes(1));
    p.start_sla_timer().await;
    p.wait_due(&t.ticket_id, WAIT, |d| d.iter().any(|(k, at)| *k == whistle_domain::TimerKind::FirstOverdue && *at == new)).await;
    p.firing_round_passed(&t.ticket_id).await;
    let fired: Vec<&'static str> = p
        .events_for(&t.ticket_id)
        .await
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Overdue { .. } | EventKind::DeadlineWarning { .. }))
        .map(|e| e.kind.name())
        .collect();
    assert!(fired.is_empty(), "fired for the superseded deadline: {fired:?}");
    assert!(p.webhook.messages(|m| m["ticket_number"] == t.ticket_number.as_str() && m["template"] != "ticket_assigned").is_empty());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_number_alone_tells_a_stranger_nothing() {
    let p = Platform::start("proof").await;
    let t = p.intake().await.submit_request(request("水管漏水了，家里到处是水", "东城区景山")).await.expect("submit").into_inner();
    p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
    let mut anyone = p.intake_with_token(None).await;
    let by = |ticket: &str, phone: &str| pb::GetTicketRequest { ticket: ticket.into(), phone: phone.into(), ..Default::default() };

    // Numbers are counted: one alone, or with someone else's phone, answers nothing.
    let bare = anyone.get_ticket(by(&t.ticket_number, "")).await.expect_err("a number alone");
    assert_eq!(bare.code(), tonic::Code::PermissionDenied, "{bare:?}");
    assert!(bare.message().contains("citizen's phone"), "{bare:?}");
    let wrong = anyone.get_ticket(by(&t.ticket_number, "139 0000 0000")).await.expect_err("another phone");
    let unknown = anyone.get_ticket(by("20261123999999", "139 0000 0000")).await.expect_err("an unknown number");
    assert_eq!((wrong.code(), unknown.code()), (tonic::Code::NotFound, tonic::Code::NotFound));
    assert_eq!(
        wrong.message().replace(&t.ticket_number, "N"),
        unknown.message().replace("20261123999999", "N"),
        "a wrong phone reads as an unknown number"
    );

    // The citizen's own phone, the ticket id, or a token of [intake] tokens.
    let mine = anyone.get_ticket(by(&t.ticket_number, "138-0013-8000")).await.expect("the citizen's phone").into_inner();
    assert_eq!(mine.ticket_id, t.ticket_id);
    let by_id = anyone.get_ticket(by(&t.ticket_id, "")).await.expect("the ticket id").into_inner();
    assert_eq!(by_id.ticket_number, t.ticket_number);
    let mut stranger = p.intake_with_token(Some("not-a-token")).await;
    assert_eq!(stranger.get_ticket(by(&t.ticket_number, "")).await.expect_err("unknown token").code(), tonic::Code::PermissionDenied);
    p.intake().await.get_ticket(by(&t.ticket_number, "")).await.expect("an agent's token");
    p.shutdown().await;
}
