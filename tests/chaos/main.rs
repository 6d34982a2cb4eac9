//! `make chaos`: the platform under faults. Every service runs as two
//! processes (release build) on a broker, Redis and SMTP server of the
//! run's own; requests arrive open-loop (Poisson) with completions,
//! revisits and extensions mixed in, while the run kills -9 each service
//! in turn (and starts it again), flushes Redis, publishes poison to the
//! topics the services read and restarts the broker. Then, from the topic
//! and what the notifier delivered, it checks: every accepted request has
//! exactly one ticket and one number; every ticket got through (dispatched
//! and its unit told, or on the triage queue) and its citizen was told
//! once; no notification twice; only the poison dead-lettered; no
//! partition left behind. It prints a table of the faults and one line.
//!
//!   make chaos
//!   CHAOS_RATE=4 CHAOS_SECONDS=240 CHAOS_FAULT_EVERY=15 make chaos
//!
//! Settings: CHAOS_RATE (requests/s, 4), CHAOS_SECONDS (how long requests
//! arrive, 240), CHAOS_FAULT_EVERY (seconds between faults, 15; the first
//! after 20 s), CHAOS_DRAIN (how long the platform may take to get the last
//! tickets through, 180 s).
//!
//! Not a test: it prints what it found, and exits non-zero when anything
//! was lost, refused, duplicated, wrongly dead-lettered or left stalled,
//! a poison message was not dead-lettered, or a process exited on its own.

#[path = "../load/observe.rs"]
#[allow(dead_code)]
mod observe;
#[path = "../load/offer.rs"]
#[allow(dead_code)]
mod offer;
#[path = "../load/procs.rs"]
#[allow(dead_code)]
mod procs;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use whistle_domain::PlatformId;
use whistle_proto::v1 as pb;
use whistle_runtime::{KafkaConfig, Topics};

use observe::{Commits, Receiver, Watcher};
use offer::{Actions, Clients, Mix, Rng};
use procs::{Processes, Setup};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// What the run did to the platform, and when.
#[derive(Debug, Clone)]
enum Fault {
    Kill(usize),
    FlushRedis,
    Poison,
    RestartBroker,
}

/// One request as the run sent it, and every answer it got.
#[derive(Debug, Default, Clone)]
struct Sent {
    at: Option<Instant>,
    /// (ticket id, ticket number) of every accepted attempt.
    answers: Vec<(String, String)>,
    attempts: u32,
    last_error: String,
}

type Ledger = Arc<Mutex<BTreeMap<String, Sent>>>;

/// Sends one request until one intake replica accepts it (or 120 s pass),
/// with the same external id every time, then once more to the next
/// replica: every retry must find the ticket the first attempt registered.
async fn submit(intakes: Vec<String>, req: pb::SubmitRequestRequest, ledger: Ledger) {
    let ext = req.external_id.clone();
    let until = Instant::now() + Duration::from_secs(120);
    let mut i = 0usize;
    loop {
        let addr = &intakes[i % intakes.len()];
        i += 1;
        let attempt = async {
            let ch = tonic::transport::Channel::from_shared(addr.clone())
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let bearer = whistle_proto::Bearer::new(Some(&procs::token("agent:load"))).map_err(|e| e.to_string())?;
            let mut client = pb::intake_client::IntakeClient::with_interceptor(ch, bearer);
            client.submit_request(req.clone()).await.map(|r| r.into_inner()).map_err(|s| format!("{}: {}", s.code(), s.message()))
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), attempt).await.unwrap_or_else(|_| Err("no answer within 10 s".into()));
        let accepted = {
            let mut l = ledger.lock().unwrap();
            let sent = l.entry(ext.clone()).or_default();
            sent.attempts += 1;
            match answer {
                Ok(r) => {
                    sent.answers.push((r.ticket_id, r.ticket_number));
                    true
                }
                Err(e) => {
                    sent.last_error = e;
                    false
                }
            }
        };
        if accepted {
            let answers = ledger.lock().unwrap().get(&ext).map_or(0, |s| s.answers.len());
            if answers >= 2 {
                return;
            }
            continue;
        }
        if Instant::now() > until {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Garbage on every topic the services read: not an event, not a request.
async fn poison(kafka: &KafkaConfig, n: &mut u32) -> anyhow::Result<u32> {
    let producer: FutureProducer = whistle_runtime::kafka::client_config(kafka).create()?;
    let topics = Topics::new(kafka);
    let mut sent = 0;
    for topic in [topics.events(), topics.intake_requests()] {
        for payload in [b"\xff\xfe not protobuf".to_vec(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], b"{\"text\": 12}".to_vec()] {
            *n += 1;
            let key = format!("chaos-poison-{n}");
            let mut body = key.clone().into_bytes();
            body.extend(&payload);
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&body), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| anyhow::anyhow!("poison to {topic}: {e}"))?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// Every message of the dead-letter topic: (key, reason header).
fn dead_letters(kafka: &KafkaConfig) -> anyhow::Result<Vec<(String, String)>> {
    let topic = Topics::new(kafka).dead_letter();
    let ends = observe::ends(kafka, &topic);
    let consumer: BaseConsumer = whistle_runtime::kafka::client_config(kafka)
        .set("group.id", format!("{}chaos-dlq", kafka.group_prefix))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..ends.len() as i32 {
        tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let total: i64 = ends.iter().sum();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < total && Instant::now() < until {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else { continue };
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let payload = m.payload().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        let header = |name: &str| -> String {
            m.headers()
                .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned())))
                .unwrap_or_default()
        };
        let reason = format!("{} ({})", header("dlq-reason"), header("dlq-service"));
        let poisoned = key.starts_with("chaos-poison-") || payload.contains("chaos-poison-");
        out.push((if poisoned { "poison".into() } else { key }, reason));
    }
    Ok(out)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let found = tokio::select! {
        done = run() => done?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    };
    if !found {
        std::process::exit(1);
    }
    Ok(())
}

async fn run() -> anyhow::Result<bool> {
    let rate: f64 = env("CHAOS_RATE", 4.0);
    let seconds: f64 = env("CHAOS_SECONDS", 240.0);
    let every: f64 = env("CHAOS_FAULT_EVERY", 15.0);
    let drain = Duration::from_secs_f64(env("CHAOS_DRAIN", 180.0));
    anyhow::ensure!(rate > 0.0 && seconds > 0.0 && every > 0.0, "CHAOS_RATE, CHAOS_SECONDS and CHAOS_FAULT_EVERY must be above 0");
    let platforms: Vec<String> = vec!["county:xicheng".into(), "street:xc-xinjiekou".into()];
    let running: Vec<PlatformId> = vec![
        PlatformId::City,
        PlatformId::parse(&platforms[0]).map_err(anyhow::Error::msg)?,
        PlatformId::parse(&platforms[1]).map_err(anyhow::Error::msg)?,
    ];

    let infra = whistle_tests::infra();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let prefix = format!("chaos-{stamp}.");
    let dir = whistle_tests::repo_root().join(format!(".local/chaos/{stamp}"));
    std::fs::create_dir_all(&dir)?;
    let receiver = Receiver::start().await?;
    let mut processes = Processes::start(&Setup {
        prefix: &prefix,
        brokers: &infra.brokers,
        redis_url: &infra.redis_url,
        webhook_url: receiver.webhook_url(),
        sms_url: receiver.sms_url(),
        platforms: &platforms,
        dir: &dir,
        replicas: 2,
    })?;
    processes.wait_ready(Duration::from_secs(180)).await?;
    let kafka =
        KafkaConfig { brokers: infra.brokers.clone(), topic_prefix: prefix.clone(), group_prefix: prefix.clone(), ..Default::default() };
    let events_topic = Topics::new(&kafka).events();
    let partitions = observe::ends(&kafka, &events_topic).len() as i32;
    anyhow::ensure!(partitions > 0, "the events topic has no partitions on {}", infra.brokers);
    let watcher = Watcher::start(&kafka, &running)?;
    let mut groups: Vec<String> = processes.groups.iter().map(|(_, g)| g.clone()).collect();
    groups.sort();
    groups.dedup();
    let commits = Commits::start(&kafka, &groups, &format!("{prefix}sla-timer"), partitions)?;
    let clients = Clients::connect(&processes.intakes[0], processes.desks.clone(), &processes.revisit).await?;
    let corpus = offer::corpus()?;
    let actions = Arc::new(Actions::default());
    let follower =
        offer::follow(clients.clone(), &watcher, Mix { complete: 0.3, revisit: 0.6, unsatisfied: 0.2, extend: 0.1 }, actions.clone());
    println!(
        "Whistle chaos: {} processes ({}), broker {} ({}), redis {}; config and logs in {}",
        processes.procs.len(),
        processes.procs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        infra.brokers,
        std::env::var("WHISTLE_BROKER").unwrap_or_else(|_| "tansu".into()),
        infra.redis_url,
        dir.display()
    );
    println!(
        "Requests: {rate}/s for {seconds:.0} s from the corpus, each with its own external id (a failed submit is retried on the other intake with it); a fault every {every:.0} s.\n"
    );

    // The faults, in turn: each service's first replica killed -9 (and
    // started again 3 s later), Redis flushed, poison, the broker restarted.
    let mut plan: Vec<Fault> = (0..processes.procs.len()).filter(|i| !processes.procs[*i].name.contains('#')).map(Fault::Kill).collect();
    plan.insert(plan.len() / 2, Fault::FlushRedis);
    plan.insert(plan.len() / 3, Fault::Poison);
    plan.push(Fault::RestartBroker);

    let ledger: Ledger = Arc::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let intakes = processes.intakes.clone();
    let arrivals = {
        let (ledger, corpus) = (ledger.clone(), corpus.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new(0xc4a05);
            let mut due = Instant::now();
            let mut tasks = Vec::new();
            let mut n = 0u64;
            loop {
                due += rng.gap(rate);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let s = &corpus[(rng.next() % corpus.len() as u64) as usize];
                n += 1;
                let ext = format!("chaos-{stamp}-{n}");
                ledger.lock().unwrap().entry(ext.clone()).or_default().at = Some(Instant::now());
                let req = pb::SubmitRequestRequest {
                    channel: "app".into(),
                    external_id: ext,
                    text: s.text.clone(),
                    address: s.address.clone(),
                    language: s.language.clone(),
                    citizen_name: "故障演练".into(),
                    citizen_phone: format!("137{:08}", n % 100_000_000),
                    ..Default::default()
                };
                tasks.push(tokio::spawn(submit(intakes.clone(), req, ledger.clone())));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };

    let mut injected: Vec<(Duration, String)> = Vec::new();
    // Processes that exited on their own (not killed by the run).
    let mut crashed: Vec<String> = Vec::new();
    let mut poison_n = 0u32;
    let mut poison_sent = 0u32;
    let mut next = start + Duration::from_secs(20);
    for fault in plan {
        if next + Duration::from_secs(5) > end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let at = start.elapsed();
        let what = match fault {
            Fault::Kill(i) => {
                let name = processes.procs[i].name.clone();
                processes.kill9(i)?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                processes.restart(i)?;
                if let Err(e) = processes.check_alive() {
                    crashed.push(e.to_string());
                }
                format!("kill -9 {name}, started again after 3 s")
            }
            Fault::FlushRedis => {
                let mut redis = redis::Client::open(infra.redis_url.as_str())?.get_multiplexed_async_connection().await?;
                let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
                "Redis FLUSHALL".to_owned()
            }
            Fault::Poison => {
                let sent = poison(&kafka, &mut poison_n).await?;
                poison_sent += sent;
                format!("{sent} poison messages on the events and intake-requests topics")
            }
            Fault::RestartBroker => {
                let status = std::process::Command::new("bash")
                    .arg("-c")
                    .arg(
                        "source deploy/local/env.sh; pid=$(cat $WHISTLE_DATA/$WHISTLE_BROKER.pid 2>/dev/null); \
                         if [ -n \"$pid\" ]; then kill $pid 2>/dev/null; \
                           for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; \
                           ! kill -0 $pid 2>/dev/null || exit 1; fi; \
                         deploy/local/infra.sh start >/dev/null",
                    )
                    .current_dir(whistle_tests::repo_root())
                    .status()?;
                anyhow::ensure!(status.success(), "could not restart the broker (it did not stop within 60 s, or did not start)");
                "broker restarted".to_owned()
            }
        };
        println!("  {:>5.0} s  {what}", at.as_secs_f64());
        injected.push((at, what));
        next += Duration::from_secs_f64(every);
    }
    arrivals.await?;
    let load_took = start.elapsed();

    // Drain: every accepted ticket through, or the drain's time up.
    let through = |ticket: &str, number: &str| -> Option<Instant> {
        let seen = watcher.topic.lock().unwrap().tickets.get(ticket).cloned()?;
        let told = receiver.first("ticket_received", number, "citizen")?;
        if let Some(d) = &seen.dispatched {
            return Some(d.at.max(receiver.first("ticket_assigned", number, "unit")?).max(told));
        }
        if seen.triage {
            return seen.classified.map(|c| c.max(told));
        }
        seen.delegated_away.map(|d| d.max(told))
    };
    let accepted = |l: &BTreeMap<String, Sent>| -> Vec<(String, Sent)> {
        l.iter().filter(|(_, s)| !s.answers.is_empty()).map(|(k, s)| (k.clone(), s.clone())).collect()
    };
    let until = Instant::now() + drain;
    loop {
        let pending = accepted(&ledger.lock().unwrap()).iter().filter(|(_, s)| through(&s.answers[0].0, &s.answers[0].1).is_none()).count();
        if pending == 0 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    follower.abort();
    // Let the actions' own events settle, then read where every group stands.
    tokio::time::sleep(Duration::from_secs(10)).await;
    if let Err(e) = processes.check_alive() {
        crashed.push(e.to_string());
    }

    let ledger = ledger.lock().unwrap().clone();
    let ok = accepted(&ledger);
    let refused: Vec<&Sent> = ledger.values().filter(|s| s.answers.is_empty()).collect();
    // Failed attempts before the first answer (every request is sent once
    // more after it on purpose).
    let retried = ok.iter().filter(|(_, s)| s.attempts as usize > s.answers.len()).count();
    // One ticket, one number per request.
    let two_tickets = ok.iter().filter(|(_, s)| s.answers.iter().any(|a| a.0 != s.answers[0].0)).count();
    let (received_twice, numbers_shared) = {
        let topic = watcher.topic.lock().unwrap();
        let mut by_number: HashMap<&str, Vec<&str>> = HashMap::new();
        for (id, n) in &topic.numbers {
            by_number.entry(n.as_str()).or_default().push(id.as_str());
        }
        let received_twice = topic.external_ids.iter().filter(|(ext, ids)| ledger.contains_key(*ext) && ids.len() > 1).count();
        (received_twice, by_number.values().filter(|ids| ids.len() > 1).count())
    };
    // Through, and every citizen told.
    let lost: Vec<&(String, Sent)> = ok.iter().filter(|(_, s)| through(&s.answers[0].0, &s.answers[0].1).is_none()).collect();
    // Notifications: each (template, ticket, recipient) at most once.
    let (deliveries, twice) = {
        let got = receiver.got.lock().unwrap();
        (got.count, got.counts.values().filter(|n| **n > 1).count())
    };
    // Dead letters: only the poison.
    let dlq = dead_letters(&kafka)?;
    let wrongly: Vec<&(String, String)> = dlq.iter().filter(|(k, _)| k != "poison").collect();
    let poison_seen = dlq.len() - wrongly.len();
    // Partitions: every group at the end of the events topic.
    let ends = observe::ends(&kafka, &events_topic);
    // A commit sample taken after the ends were read (they come every 0.5 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut stalled: Vec<String> = Vec::new();
    if ends.len() != partitions as usize {
        // The broker did not say where the topic ends: nothing can be
        // shown to have caught up.
        stalled
            .extend((ends.len()..partitions as usize).map(|p| format!("{events_topic}[{p}] (its end unknown: the broker did not answer)")));
    }
    for g in &groups {
        let committed = commits.latest(g);
        if committed.len() < ends.len() {
            stalled.push(format!("{g}: its commits unknown on {} partitions", ends.len() - committed.len()));
        }
        for (p, (c, e)) in committed.iter().zip(&ends).enumerate() {
            if c < e {
                stalled.push(format!("{g}[{p}] {} behind", e - c));
            }
        }
    }
    // Who holds how many partitions of each group, when some are behind.
    let mut holders: Vec<String> = Vec::new();
    if !stalled.is_empty() {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        for p in &processes.procs {
            let metrics = match http.get(format!("http://{}/metrics", p.ops)).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("(no answer: {e})"),
            };
            let held: Vec<String> = metrics
                .lines()
                .filter_map(|l| l.strip_prefix("whistle_consumer_partitions{group=\""))
                .filter_map(|l| l.split_once("\"} "))
                .map(|(g, n)| format!("{} {n}", g.strip_prefix(&prefix).unwrap_or(g)))
                .collect();
            holders.push(format!("{}: {}", p.name, if held.is_empty() { "none".into() } else { held.join(", ") }));
        }
    }
    // Recovery: the first request sent after each fault to get through, and
    // the slowest of those sent in the 5 s after it (a stall shows there).
    println!("\n| at | fault | first request sent after it, through in | slowest sent within 5 s after it |");
    println!("|---:|---|---:|---:|");
    for (at, what) in &injected {
        let after = start + *at;
        let sent_after: Vec<(Instant, Option<Instant>)> =
            ok.iter().filter_map(|(_, s)| s.at.filter(|t| *t > after).map(|t| (t, through(&s.answers[0].0, &s.answers[0].1)))).collect();
        let first = sent_after.iter().filter_map(|(_, t)| *t).min();
        let soon: Vec<&(Instant, Option<Instant>)> = sent_after.iter().filter(|(t, _)| *t <= after + Duration::from_secs(5)).collect();
        let slowest = if soon.iter().any(|(_, t)| t.is_none()) {
            "not all through".to_owned()
        } else {
            soon.iter().filter_map(|(sent, t)| t.map(|t| t - *sent)).max().map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        let cell = first.map(|t| format!("{:.1} s", (t - after).as_secs_f64())).unwrap_or_else(|| "never".into());
        println!("| {:.0} s | {what} | {cell} | {slowest} |", at.as_secs_f64());
    }
    println!(
        "\nLoad: {} requests in {:.0} s, {} accepted ({} after a retry), {} never accepted{}; units and agents: {} completed, {} revisited, {} extensions, {} actions failed",
        ledger.len(),
        load_took.as_secs_f64(),
        ok.len(),
        retried,
        refused.len(),
        refused.first().map(|s| format!(" (e.g. {})", s.last_error)).unwrap_or_default(),
        actions.completed.load(std::sync::atomic::Ordering::Relaxed),
        actions.revisited.load(std::sync::atomic::Ordering::Relaxed),
        actions.extensions.load(std::sync::atomic::Ordering::Relaxed),
        actions.failed.load(std::sync::atomic::Ordering::Relaxed),
    );
    println!(
        "Tickets: {} requests answered with two different tickets, {} registered twice on the topic, {} numbers given to two tickets; {} not through (dispatched and the unit told, or on triage, and the citizen told){}",
        two_tickets,
        received_twice,
        numbers_shared,
        lost.len(),
        lost.first().map(|(ext, s)| format!(" (e.g. {ext}, ticket {})", s.answers[0].1)).unwrap_or_default()
    );
    println!("Notifications: {deliveries} delivered, {twice} delivered more than once (same template, ticket and recipient)");
    println!(
        "Dead letters: {} ({} of the {poison_sent} poison messages' readings, {} others{})",
        dlq.len(),
        poison_seen,
        wrongly.len(),
        wrongly.first().map(|(k, r)| format!(", e.g. {k}: {r}")).unwrap_or_default()
    );
    println!("Partitions behind at the end: {}", if stalled.is_empty() { "none".to_owned() } else { stalled.join(", ") });
    if !crashed.is_empty() {
        println!("Processes that exited on their own: {}", crashed.join("; "));
    }
    if !holders.is_empty() {
        println!("Partitions each process holds (its whistle_consumer_partitions): {}", holders.join("; "));
    }
    println!("Reminders: none fell due (the demo city's deadlines are hours away), so their exactly-once is not checked by this run.");
    let duplicated = two_tickets + received_twice + numbers_shared + twice;
    println!(
        "chaos: {} requests, {} faults, {} lost, {} duplicated, {} stalled partitions",
        ok.len(),
        injected.len(),
        lost.len(),
        duplicated,
        stalled.len()
    );
    drop(processes);
    // Each poison message must have been dead-lettered (by every group that reads its topic).
    let poison_handled = poison_seen >= poison_sent as usize;
    if !poison_handled {
        println!("Only {poison_seen} dead letters of poison for {poison_sent} poison messages sent: some were not handled");
    }
    Ok(lost.is_empty()
        && duplicated == 0
        && stalled.is_empty()
        && wrongly.is_empty()
        && refused.is_empty()
        && crashed.is_empty()
        && poison_handled)
}
