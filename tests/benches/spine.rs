//! End-to-end benchmark of the spine on the real broker and Redis: submits
//! requests through the real gRPC client with some in flight at once and
//! measures when each ticket's `dispatched` event lands on Kafka.
//!
//! Prints: tickets/s end to end, submit (intake ack) latency and
//! intake-to-dispatched latency percentiles, and the process's memory.
//!
//!   make bench                    # 3000 requests, 64 in flight
//!   BENCH_N=5000 BENCH_CONCURRENCY=128 make bench

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use whistle_domain::EventKind;
use whistle_tests::{Platform, request};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

use whistle_tests::stats::percentile_ms as pct;

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(|l| l[field.len()..].trim().to_owned()))
        .unwrap_or_else(|| "n/a".into())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_usize("BENCH_N", 3000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let p = Platform::start("bench").await;

    // Watch the events topic for `dispatched`.
    let dispatched_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let consumer: StreamConsumer = whistle_runtime::kafka::client_config(&p.kafka)
        .set("group.id", format!("{}bench-watch", p.prefix))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&p.topics().events()]).expect("subscribe");
    let watch = {
        let seen = dispatched_at.clone();
        tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else {
                    continue;
                };
                if m.headers().is_some()
                    && m.payload().is_some()
                    && let Ok(e) = whistle_proto::decode_event(m.payload().unwrap_or_default())
                    && matches!(e.kind, EventKind::Dispatched { .. })
                {
                    seen.lock().unwrap().entry(e.ticket_id.to_string()).or_insert_with(Instant::now);
                }
            }
        })
    };
    // Warm up: one ticket through, so group joins are not measured.
    let mut c = p.intake().await;
    let w = c.submit_request(request("楼道漏水 warm-up", "东城区景山")).await.expect("warm-up").into_inner();
    p.wait_ticket(&w.ticket_number, Duration::from_secs(60), |v| v.state == "assigned").await;

    let texts = [
        ("楼上漏水，已经三天了", "东城区景山街道"),
        ("路灯不亮，晚上很危险", "西城区新街口"),
        ("养老金什么时候发放", "海淀区中关村"),
        ("暖气不热", "东城区安定门"),
        ("公交站牌损坏", "海淀区学院路"),
        ("请问怎么办理居住证", ""),
    ];
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let submit_lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let mut c = c.clone();
        let (text, addr) = texts[i % texts.len()];
        let mut req = request(&format!("{text} #{i}"), addr);
        req.citizen_phone = format!("139{:08}", i);
        let started = started.clone();
        let submit_lat = submit_lat.clone();
        tasks.push(tokio::spawn(async move {
            let s = Instant::now();
            let r = c.submit_request(req).await.expect("submit").into_inner();
            submit_lat.lock().unwrap().push(s.elapsed());
            started.lock().unwrap().insert(r.ticket_id, s);
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let submitted = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = {
            let seen = dispatched_at.lock().unwrap();
            started.lock().unwrap().keys().filter(|k| seen.contains_key(*k)).count()
        };
        if done >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = t0.elapsed();
    watch.abort();

    let seen = dispatched_at.lock().unwrap().clone();
    let started = started.lock().unwrap().clone();
    let mut e2e: Vec<Duration> = started.iter().filter_map(|(id, s)| seen.get(id).map(|d| d.duration_since(*s))).collect();
    e2e.sort();
    let mut sub = submit_lat.lock().unwrap().clone();
    sub.sort();
    let last = started.keys().filter_map(|id| seen.get(id)).max().copied().unwrap_or(t0 + total);

    println!(
        "whistle spine benchmark: {n} requests, {concurrency} in flight, broker {} (Tansu), redis {}",
        p.kafka.brokers,
        p.redis.url.expose()
    );
    println!("  submitted (ticket numbers issued) in {:.2} s: {:.0} req/s", submitted.as_secs_f64(), n as f64 / submitted.as_secs_f64());
    println!(
        "  end to end (submit -> dispatched on Kafka): {} of {n} in {:.2} s: {:.0} tickets/s",
        e2e.len(),
        last.duration_since(t0).as_secs_f64(),
        e2e.len() as f64 / last.duration_since(t0).as_secs_f64()
    );
    println!(
        "  submit latency (until the broker acked `received`): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(&sub, 0.5),
        pct(&sub, 0.99),
        pct(&sub, 1.0)
    );
    println!("  intake -> dispatched latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms", pct(&e2e, 0.5), pct(&e2e, 0.99), pct(&e2e, 1.0));
    println!("  memory (every service of the platform in this process): rss {}  peak {}", proc_status("VmRSS:"), proc_status("VmHWM:"));

    // The figures of the run's day over gRPC: a whole day from the daily
    // tallies, and (a period that is not whole days) folded from the topic.
    let events = p.read_topic(&p.topics().events()).await.len();
    let mut revisit = p.revisit_as("city").await;
    for (what, from, to) in
        [("daily tallies", "2026-11-23", "2026-11-24"), ("events topic", "2026-11-23T00:00:01+08:00", "2026-11-23T23:59:59+08:00")]
    {
        let ask = whistle_proto::v1::FiguresRequest { from: from.into(), to: to.into(), ..Default::default() };
        let mut took = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let f = revisit.figures(ask.clone()).await.expect("figures").into_inner();
            took.push(t.elapsed());
            last = Some(f);
        }
        took.sort();
        let f = last.expect("figures");
        assert_eq!(f.source, what);
        let city = f.rows.iter().find(|r| r.scope == "city").expect("a city row");
        println!(
            "  figures from the {what} ({events} events on the topic, 5 calls): median {:.0} ms  max {:.0} ms; city: {} received, {} dispatched",
            pct(&took, 0.5),
            pct(&took, 1.0),
            city.received,
            city.dispatched
        );
    }
    p.shutdown().await;
}
