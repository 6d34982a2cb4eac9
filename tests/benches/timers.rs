//! Timer engine benchmark against BullMQ delayed jobs, on one local
//! redis-server, in one run. Prints schedules/s, fires/s, cancels/s, firing
//! lateness p50/p99/max with 10k, 100k and 1M outstanding timers, Redis bytes
//! per timer, time to recover in-flight timers after kill -9, and the fire
//! rate with the Kafka produce of the overdue event included.
//!
//!   make bench-timers                       # sizes 10k,100k,1M; BullMQ too
//!   TIMER_BENCH_SIZES=10000,100000 BULLMQ=0 make bench-timers
//!
//! A fire is counted where the engine hands the due timer to its consumer
//! (BullMQ: where the worker's processor is called), so both sides do the
//! same work.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use whistle_domain::{EventId, ManualClock, SystemClock, TicketId, TimerKind, UnitCode};
use whistle_runtime::{RedisConfig, Secret, Shutdown};
use whistle_sla_timer::{Arm, Due, Engine, EngineSettings, Record, Sink, TimerStore};
use whistle_tests::{infra, unique_prefix};

type Store = TimerStore<redis::aio::ConnectionManager>;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[(((v.len() - 1) as f64) * p).round() as usize]
}

/// Counts fires and records lateness (ms) when asked to.
#[derive(Default)]
struct Counter {
    fired: AtomicUsize,
    lateness: Mutex<Vec<f64>>,
}

impl Sink for Counter {
    async fn fire(&self, due: Vec<Due>) -> whistle_sla_timer::Result<()> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e6;
        let mut l = self.lateness.lock().unwrap();
        for d in &due {
            l.push(now - d.due_ms as f64);
        }
        self.fired.fetch_add(due.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// Removes what a phase left in Redis, so the next phase starts clean.
async fn drop_keys(c: &mut redis::aio::ConnectionManager, pattern: &str) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(c).await.unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(c).await.unwrap();
    }
}

async fn used_memory(c: &mut redis::aio::ConnectionManager) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(c).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn record() -> Record {
    Record { version: EventId::new(), unit: UnitCode::parse("city-water").unwrap(), deadline_ms: now_ms(), traceparent: None }
}

/// Arms one timer per ticket for `n` tickets, in pipelined batches of 1000
/// with 32 batches in flight (as the BullMQ side uses `addBulk`).
async fn schedule(
    store: &Store,
    n: usize,
    due: impl Fn(usize) -> i64 + Send + Sync + 'static,
    _concurrency: usize,
) -> (Vec<TicketId>, f64) {
    let due = Arc::new(due);
    let tickets: Vec<TicketId> = (0..n).map(|_| TicketId::new()).collect();
    let started = Instant::now();
    let batches: Vec<Vec<(TicketId, Record, Vec<Arm>)>> = tickets
        .chunks(1000)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, t)| (*t, record(), vec![Arm { kind: TimerKind::FirstOverdue, due_ms: due(b * 1000 + i) }]))
                .collect()
        })
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for batch in batches {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.arm_many(&batch).await.unwrap();
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (tickets, n as f64 / started.elapsed().as_secs_f64())
}

#[derive(Debug, Default, Clone)]
struct Figures {
    schedules: f64,
    fires: f64,
    cancels: f64,
    bytes: f64,
    lateness: BTreeMap<usize, (f64, f64, f64)>,
    recovery_s: f64,
    fires_with_kafka: f64,
}

async fn ours(redis_url: &str, sizes: &[usize], lateness_n: usize, lateness_rate: f64) -> Figures {
    let cfg = RedisConfig { url: Secret::new(redis_url.to_owned()), key_prefix: unique_prefix("bench-timers"), ..Default::default() };
    let mut admin = whistle_runtime::redis_client::connect(&cfg).await.unwrap();
    let mut f = Figures::default();
    for &size in sizes {
        let store: Store = TimerStore::new(admin.clone(), &format!("{}{size}:", cfg.key_prefix), 8);
        store.mark_alive().await.unwrap();
        let before = used_memory(&mut admin).await;
        let far = now_ms() + 3_600_000;
        let (tickets, rate) = schedule(&store, size, move |i| far + (i as i64 % 600_000), 64).await;
        let bytes = (used_memory(&mut admin).await - before) as f64 / size as f64;
        eprintln!("ours  {size:>8} outstanding: {rate:.0} schedules/s, {bytes:.0} bytes/timer");
        if size == *sizes.iter().max().unwrap() {
            f.schedules = rate;
            f.bytes = bytes;
        }
        // Lateness below capacity: a stream of near-term timers while `size` wait.
        let sink = Arc::new(Counter::default());
        let wake = Arc::new(Notify::new());
        let settings = EngineSettings { claim_ttl_ms: 5_000, claim_batch: 512, max_idle_ms: 1_000 };
        let engine = Arc::new(Engine::new(store.clone(), sink.clone(), Arc::new(SystemClock), wake.clone(), settings));
        let stop = Shutdown::new();
        let run = {
            let (engine, stop) = (engine.clone(), stop.clone());
            tokio::spawn(async move { engine.run(&stop).await })
        };
        let gap = Duration::from_secs_f64(1.0 / lateness_rate);
        let t0 = Instant::now();
        for i in 0..lateness_n {
            let target = t0 + gap * i as u32;
            tokio::time::sleep_until(target.into()).await;
            store
                .arm(&TicketId::new(), &record(), &[Arm { kind: TimerKind::FirstOverdue, due_ms: now_ms() + 200 }], [false; 3])
                .await
                .unwrap();
            wake.notify_one();
        }
        while sink.fired.load(Ordering::Relaxed) < lateness_n && t0.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.trigger();
        let _ = run.await;
        let mut l = sink.lateness.lock().unwrap().clone();
        let (p50, p99, max) = (pct(&mut l, 0.5), pct(&mut l, 0.99), pct(&mut l, 1.0));
        eprintln!("ours  {size:>8} outstanding: lateness p50 {p50:.1} ms p99 {p99:.1} ms max {max:.1} ms at {lateness_rate:.0}/s");
        f.lateness.insert(size, (p50, p99, max));
        // Cancels: a tenth of them.
        let cancel_n = (size / 10).clamp(1, 50_000);
        let started = Instant::now();
        let chunks: Vec<Vec<TicketId>> = tickets[..cancel_n].chunks(cancel_n.div_ceil(64)).map(<[_]>::to_vec).collect();
        let tasks: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let store = store.clone();
                tokio::spawn(async move {
                    for t in c {
                        store.cancel(&t, true).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let cancels = cancel_n as f64 / started.elapsed().as_secs_f64();
        eprintln!("ours  {size:>8} outstanding: {cancels:.0} cancels/s");
        if size == *sizes.iter().max().unwrap() {
            f.cancels = cancels;
        }
        // Fires: everything left falls due at once; drain it.
        let clock = ManualClock::new(time::OffsetDateTime::now_utc() + time::Duration::hours(2));
        let sink = Arc::new(Counter::default());
        let engine = Engine::new(
            store.clone(),
            sink.clone(),
            Arc::new(clock),
            Arc::new(Notify::new()),
            EngineSettings { claim_batch: 1024, ..Default::default() },
        );
        let left = size - cancel_n;
        let started = Instant::now();
        while sink.fired.load(Ordering::Relaxed) < left {
            engine.round().await.unwrap();
        }
        let fires = left as f64 / started.elapsed().as_secs_f64();
        eprintln!("ours  {size:>8} outstanding: {fires:.0} fires/s");
        drop_keys(&mut admin, &format!("{}{size}:*", cfg.key_prefix)).await;
        if size == *sizes.iter().max().unwrap() {
            f.fires = fires;
        }
    }
    // Recovery after kill -9: instance A claims 1000 due timers and dies; B
    // (running) fires them when the claims expire.
    let store: Store = TimerStore::new(admin.clone(), &format!("{}recovery:", cfg.key_prefix), 8);
    store.mark_alive().await.unwrap();
    let (_, _) = schedule(&store, 1000, |_| now_ms() - 1, 64).await;
    for s in 0..store.shards() {
        store.claim(s, now_ms(), 5_000, 10_000).await.unwrap();
    }
    let killed = Instant::now();
    let sink = Arc::new(Counter::default());
    let engine =
        Arc::new(Engine::new(store.clone(), sink.clone(), Arc::new(SystemClock), Arc::new(Notify::new()), EngineSettings::default()));
    let stop = Shutdown::new();
    let run = {
        let (engine, stop) = (engine.clone(), stop.clone());
        tokio::spawn(async move { engine.run(&stop).await })
    };
    while sink.fired.load(Ordering::Relaxed) < 1000 && killed.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.recovery_s = killed.elapsed().as_secs_f64();
    stop.trigger();
    let _ = run.await;
    eprintln!("ours  recovery after kill -9 with 1000 in flight: {:.2} s (claim ttl 5 s)", f.recovery_s);
    f.fires_with_kafka = with_kafka(redis_url).await;
    f
}

/// Fires/s when each fire also publishes its overdue event to Kafka (acks=all).
async fn with_kafka(redis_url: &str) -> f64 {
    let n: usize = std::env::var("TIMER_BENCH_KAFKA_N").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let prefix = unique_prefix("bench-kafka");
    let kafka = whistle_runtime::KafkaConfig {
        brokers: infra().brokers.clone(),
        topic_prefix: prefix.clone(),
        group_prefix: prefix.clone(),
        ..Default::default()
    };
    whistle_runtime::topics::ensure(&kafka).await.unwrap();
    let cfg = whistle_sla_timer::Config {
        kafka,
        redis: RedisConfig { url: Secret::new(redis_url.to_owned()), key_prefix: prefix.clone(), ..Default::default() },
        sla_timer: whistle_sla_timer::TimerSettings { ops_listen: ([127, 0, 0, 1], 0).into(), ..Default::default() },
        ..Default::default()
    };
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let svc = whistle_sla_timer::SlaTimer::build_with_clock(cfg.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = svc.store().clone();
    let (_, _) = {
        let conn = whistle_runtime::redis_client::connect(&cfg.redis).await.unwrap();
        let s: Store = TimerStore::new(conn, &prefix, store.shards());
        schedule(&s, n, |_| now_ms(), 64).await
    };
    clock.set(time::OffsetDateTime::now_utc() + time::Duration::minutes(1));
    let producer = whistle_runtime::EventProducer::new(&cfg.kafka).unwrap();
    // The service's own sink: each fire publishes its overdue event.
    let sink =
        Arc::new(Counting { inner: whistle_sla_timer::KafkaSink::new(producer, Arc::new(clock.clone())), fired: AtomicUsize::new(0) });
    let engine = Engine::new(
        store,
        sink.clone(),
        Arc::new(clock),
        Arc::new(Notify::new()),
        EngineSettings { claim_batch: 1024, ..Default::default() },
    );
    let started = Instant::now();
    while sink.fired.load(Ordering::Relaxed) < n {
        engine.round().await.unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    eprintln!("ours  with the Kafka produce of each overdue event: {rate:.0} fires/s ({n} timers, Tansu)");
    rate
}

/// Counts what another sink fired.
struct Counting<S> {
    inner: S,
    fired: AtomicUsize,
}

impl<S: Sink> Sink for Counting<S> {
    async fn fire(&self, due: Vec<Due>) -> whistle_sla_timer::Result<()> {
        let n = due.len();
        self.inner.fire(due).await?;
        self.fired.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the BullMQ side (Node.js) against the same redis-server.
fn bullmq(redis_url: &str, sizes: &[usize], lateness_n: usize, lateness_rate: f64) -> Option<Figures> {
    if std::env::var("BULLMQ").as_deref() == Ok("0") {
        return None;
    }
    let script = whistle_tests::repo_root().join("tests/benches/bullmq/run.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .env("SIZES", sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
        .env("LATENESS_N", lateness_n.to_string())
        .env("LATENESS_RATE", lateness_rate.to_string())
        .env("REDIS_URL", redis_url)
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("bullmq benchmark failed: {}", String::from_utf8_lossy(&out.stdout));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut lateness = BTreeMap::new();
    for s in sizes {
        let l = &v["lateness"][s.to_string()];
        lateness.insert(
            *s,
            (l["p50"].as_f64().unwrap_or(f64::NAN), l["p99"].as_f64().unwrap_or(f64::NAN), l["max"].as_f64().unwrap_or(f64::NAN)),
        );
    }
    Some(Figures {
        schedules: num("schedules"),
        fires: num("fires"),
        cancels: num("cancels"),
        bytes: num("bytes"),
        lateness,
        recovery_s: num("recovery_s"),
        fires_with_kafka: f64::NAN,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("TIMER_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let lateness_n = 3000;
    let lateness_rate = 1000.0;
    // One redis-server of its own for both sides: no persistence, so neither
    // side is slowed by the other's AOF rewrites, and nothing is left behind.
    let _ = infra();
    let port: u16 = std::env::var("BENCH_REDIS_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(6390);
    let mut server = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server for the benchmark");
    let redis_url = format!("redis://127.0.0.1:{port}/0");
    let mut admin = loop {
        match whistle_runtime::redis_client::connect(&RedisConfig { url: Secret::new(redis_url.clone()), ..Default::default() }).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let hz: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("hz").query_async(&mut admin).await.unwrap_or_default();
    let ours = ours(&redis_url, &sizes, lateness_n, lateness_rate).await;
    let theirs = bullmq(&redis_url, &sizes, lateness_n, lateness_rate);
    let _ = server.kill();
    let _ = server.wait();
    let largest = *sizes.iter().max().unwrap();

    println!();
    println!(
        "timer engines on one redis-server ({}, no persistence; hz {}), {} cores",
        redis_url,
        hz.get(1).map_or("?", String::as_str),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<44} {:>14} {:>14} {:>10}", "", "whistle", "bullmq", "ratio");
    let row = |name: &str, a: f64, b: Option<f64>, higher_better: bool| {
        let (bs, r) = match b {
            Some(b) if b.is_finite() => (format!("{b:.1}"), if higher_better { format!("{:.1}x", a / b) } else { format!("{:.2}", a / b) }),
            _ => ("-".into(), "-".into()),
        };
        println!("{name:<44} {a:>14.1} {bs:>14} {r:>10}");
    };
    let t = theirs.as_ref();
    row(&format!("schedules/s ({largest} outstanding)"), ours.schedules, t.map(|t| t.schedules), true);
    row(&format!("fires/s (draining {largest})"), ours.fires, t.map(|t| t.fires), true);
    row(&format!("cancels/s ({largest} outstanding)"), ours.cancels, t.map(|t| t.cancels), true);
    row(&format!("redis bytes per timer ({largest})"), ours.bytes, t.map(|t| t.bytes), false);
    for s in &sizes {
        let (a50, a99, amax) = ours.lateness[s];
        let tb = t.and_then(|t| t.lateness.get(s).copied());
        row(&format!("lateness p50 ms, {s} outstanding"), a50, tb.map(|x| x.0), false);
        row(&format!("lateness p99 ms, {s} outstanding"), a99, tb.map(|x| x.1), false);
        row(&format!("lateness max ms, {s} outstanding"), amax, tb.map(|x| x.2), false);
    }
    row("recovery after kill -9, s (1000 in flight)", ours.recovery_s, t.map(|t| t.recovery_s), false);
    row("fires/s with the Kafka produce (Tansu)", ours.fires_with_kafka, None, true);
    println!("lateness measured with {lateness_n} timers armed at {lateness_rate:.0}/s, each due 200 ms after arming");
}
