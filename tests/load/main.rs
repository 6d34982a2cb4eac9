//! `make load`: the pipeline at speed, measured as deployed. Every service
//! runs as its own process (release build) on the real broker and Redis;
//! requests from the corpus arrive open-loop (Poisson, at a fixed rate
//! whatever the answers do) at rising rates, with completions, revisits
//! and extensions mixed in, until a rate no longer holds. For each rate it
//! prints what was accepted and got through, the submit latency, the time
//! from intake to each step (classified, dispatched, timers armed, unit
//! and citizen told), the consumer lag, and each process's CPU and memory;
//! then the raw broker's ceiling measured in the same run, and one line.
//!
//!   make load                                  # 20, 50, 100, 200, 500, 1000/s, then on while it holds
//!   LOAD_RATES=20,40 LOAD_SECONDS=10 make load
//!
//! Settings: LOAD_RATES (requests/s, comma-separated), LOAD_SECONDS (each
//! rate's window, 20), LOAD_DRAIN_SECONDS (how long a rate may take to get
//! its last ticket through after its window, 60), LOAD_MAX_RATE (4000),
//! LOAD_RAW_MESSAGES (the raw broker run, 30000), LOAD_PLATFORMS (the
//! dispatchers besides the city's: those `make run` starts). LOAD_RAW_ONLY=1
//! measures the raw broker alone; LOAD_RAW_HEADERS=0, LOAD_RAW_KEYS=0,
//! LOAD_RAW_IDEMPOTENT=false, LOAD_RAW_ACKS=1 and LOAD_RAW_LINGER=<ms> make
//! its messages or producer differ from the platform's, to see what costs.
//!
//! Not a test: it asserts nothing about speed; it prints figures.

// observe, offer and procs are make chaos's too (tests/chaos): each
// binary uses only part of them.
#[allow(dead_code)]
mod observe;
#[allow(dead_code)]
mod offer;
#[allow(dead_code)]
mod procs;
mod raw;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use whistle_domain::PlatformId;
use whistle_runtime::KafkaConfig;

use observe::{Commits, Receiver, Watcher};
use offer::{Actions, Arrivals, Clients, Mix, Offered, Rng};
use procs::{Processes, Setup, Usage};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

use whistle_tests::stats::percentile_ms as pct;

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// p50/p99/max of a list of latencies.
fn spread(mut v: Vec<Duration>) -> String {
    v.sort();
    format!("{}/{}/{}", ms(pct(&v, 0.5)), ms(pct(&v, 0.99)), ms(pct(&v, 1.0)))
}

struct Stage {
    rate: f64,
    offered: Offered,
    through: usize,
    /// From the window's start to the last ticket through.
    span: Duration,
    drained: bool,
    submit: Vec<Duration>,
    dispatched: Vec<Duration>,
    lag_at_end: BTreeMap<String, i64>,
    messages_per_s: f64,
    usage: Vec<(String, f64, u64)>,
}

impl Stage {
    fn achieved(&self) -> f64 {
        if self.span.is_zero() { 0.0 } else { self.through as f64 / self.span.as_secs_f64() }
    }

    /// Every request accepted, the arrivals sent on time, and the tickets
    /// through as fast as they came (at least 90% of the arrival rate, the
    /// last within 5 s of the window's end: no backlog that grows).
    fn held(&self) -> bool {
        let o = &self.offered;
        let arrivals = o.tracked.len() as f64 / o.window.as_secs_f64().max(0.001);
        o.refused == 0
            && o.offered > 0
            && self.drained
            && self.span <= o.window + Duration::from_secs(5)
            && self.achieved() >= 0.9 * arrivals
            && (o.late as f64) < 0.01 * o.offered as f64
    }
}

struct Run {
    kafka: KafkaConfig,
    watcher: Watcher,
    receiver: Receiver,
    commits: Commits,
    sla_group: String,
    groups: Vec<(String, String)>,
    pids: Vec<(String, u32)>,
}

impl Run {
    /// When ticket `id` (number `number`) got all the way through, if it did:
    /// dispatched to a unit with its timers armed, the unit and the citizen
    /// told; or left on the triage queue; or handed to a platform whose
    /// dispatcher is not in this run.
    fn through(&self, id: &str, number: &str) -> Option<Instant> {
        let seen = self.watcher.topic.lock().unwrap().tickets.get(id).cloned()?;
        let told = self.receiver.first("ticket_received", number, "citizen")?;
        if let Some(d) = &seen.dispatched {
            let armed = self.commits.past(&self.sla_group, d.partition, d.offset)?;
            let unit = self.receiver.first("ticket_assigned", number, "unit")?;
            return Some(d.at.max(armed).max(unit).max(told));
        }
        if seen.triage {
            return seen.classified.map(|c| c.max(told));
        }
        seen.delegated_away.map(|d| d.max(told))
    }

    /// Where the tickets that did not get through stopped, counted.
    fn stuck(&self, offered: &Offered) -> String {
        let mut at: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, t) in &offered.tracked {
            if self.through(id, &t.number).is_some() {
                continue;
            }
            let seen = self.watcher.topic.lock().unwrap().tickets.get(id).cloned().unwrap_or_default();
            let step = if seen.received.is_none() {
                "received not seen"
            } else if self.receiver.first("ticket_received", &t.number, "citizen").is_none() {
                "no SMS to the citizen"
            } else if seen.classified.is_none() {
                "not classified"
            } else if let Some(d) = &seen.dispatched {
                if self.commits.past(&self.sla_group, d.partition, d.offset).is_none() { "timers not armed" } else { "unit not told" }
            } else {
                "not dispatched"
            };
            *at.entry(step).or_default() += 1;
        }
        let mut said = at.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>().join(", ");
        if at.contains_key("timers not armed") {
            said += &format!(
                " (the sla-timer's group has committed {:?} in {} polls; last error: {:?})",
                self.commits.latest(&self.sla_group),
                self.commits.polls.load(Ordering::Relaxed),
                self.commits.error.lock().unwrap()
            );
        }
        said
    }

    fn usage(&self) -> Vec<(String, Usage)> {
        self.pids.iter().map(|(n, p)| (n.clone(), procs::usage(*p))).collect()
    }

    fn messages(&self) -> i64 {
        let topics = whistle_runtime::Topics::new(&self.kafka);
        [topics.events(), topics.dead_letter(), topics.intake_requests()]
            .iter()
            .map(|t| observe::ends(&self.kafka, t).iter().sum::<i64>())
            .sum()
    }

    fn lag(&self) -> BTreeMap<String, i64> {
        let ends = observe::ends(&self.kafka, &whistle_runtime::Topics::new(&self.kafka).events());
        self.groups
            .iter()
            .map(|(name, group)| {
                let committed = self.commits.latest(group);
                let lag = ends.iter().enumerate().map(|(p, e)| (e - committed.get(p).copied().unwrap_or(0)).max(0)).sum();
                (name.clone(), lag)
            })
            .collect()
    }

    async fn stage(
        &self,
        clients: &Clients,
        corpus: &[offer::Sample],
        rate: f64,
        seconds: f64,
        drain: Duration,
        arrivals: &mut Arrivals,
    ) -> Stage {
        let before = self.usage();
        let messages_before = self.messages();
        let start = Instant::now();
        let offered = offer::offer(clients, corpus, rate, seconds, arrivals).await;
        let lag_at_end = self.lag();
        let until = Instant::now() + drain;
        let (through, last, drained) = loop {
            let done: Vec<Instant> = offered.tracked.iter().filter_map(|(id, t)| self.through(id, &t.number)).collect();
            let last = done.iter().max().copied();
            if done.len() == offered.tracked.len() || Instant::now() > until {
                break (done.len(), last, done.len() == offered.tracked.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let span = last.map(|l| l.duration_since(start)).unwrap_or_default();
        let elapsed = start.elapsed();
        let messages_per_s = (self.messages() - messages_before) as f64 / span.max(Duration::from_millis(1)).as_secs_f64();
        let after = self.usage();
        let usage = before
            .iter()
            .zip(&after)
            .map(|((n, b), (_, a))| (n.clone(), 100.0 * (a.cpu.saturating_sub(b.cpu)).as_secs_f64() / elapsed.as_secs_f64(), a.rss_kib))
            .collect();
        let submit = offered.tracked.values().map(|t| t.acked - t.started).collect();
        let topic = self.watcher.topic.lock().unwrap();
        let dispatched = offered
            .tracked
            .iter()
            .filter_map(|(id, t)| topic.tickets.get(id)?.dispatched.as_ref().map(|d| d.at.saturating_duration_since(t.started)))
            .collect();
        drop(topic);
        Stage { rate, offered, through, span, drained, submit, dispatched, lag_at_end, messages_per_s, usage }
    }

    /// The latencies of one step for a stage's tickets.
    fn hop(&self, s: &Stage, step: impl Fn(&observe::Seen, &str) -> Option<Instant>) -> Vec<Duration> {
        let topic = self.watcher.topic.lock().unwrap();
        s.offered
            .tracked
            .iter()
            .filter_map(|(id, t)| step(topic.tickets.get(id)?, &t.number).map(|at| at.saturating_duration_since(t.started)))
            .collect()
    }

    fn print(&self, s: &Stage) {
        let o = &s.offered;
        let classified = self.hop(s, |seen, _| seen.classified);
        let armed = self.hop(s, |seen, _| seen.dispatched.as_ref().and_then(|d| self.commits.past(&self.sla_group, d.partition, d.offset)));
        let unit = self.hop(s, |seen, n| seen.dispatched.as_ref().and_then(|_| self.receiver.first("ticket_assigned", n, "unit")));
        let citizen = self.hop(s, |_, n| self.receiver.first("ticket_received", n, "citizen"));
        let lag: i64 = s.lag_at_end.values().sum();
        println!(
            "| {:>5.0} | {:>6}/{:<6} | {:>7.1} | {:>14} | {:>14} | {:>14} | {:>14} | {:>14} | {:>14} | {:>6} | {:>7.0} | {} |",
            s.rate,
            o.tracked.len(),
            o.offered,
            s.achieved(),
            spread(s.submit.clone()),
            spread(classified),
            spread(s.dispatched.clone()),
            spread(armed),
            spread(unit),
            spread(citizen),
            lag,
            s.messages_per_s,
            if s.held() { "yes" } else { "no" },
        );
    }
}

fn print_header() {
    println!(
        "| rate/s | accepted/offered | through/s | submit ms p50/p99/max | →classified | →dispatched | →timers armed | →unit told | →citizen SMS | lag at end | msgs/s | held |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|");
}

fn print_usage(stages: &[Stage]) {
    let Some(first) = stages.first() else { return };
    let names: Vec<&str> = first.usage.iter().map(|(n, _, _)| n.as_str()).collect();
    println!("\nCPU (% of one core, over each rate's window and drain) and resident memory (MiB at its end), per process:");
    println!("| process | {} |", stages.iter().map(|s| format!("{:.0}/s", s.rate)).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---:|".repeat(stages.len()));
    for (i, n) in names.iter().enumerate() {
        let cells: Vec<String> = stages.iter().map(|s| format!("{:.0}% {:.0}", s.usage[i].1, s.usage[i].2 as f64 / 1024.0)).collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
}

fn print_raw(raw: &raw::Raw, partitions: i32, shape: &raw::Shape) {
    println!(
        "Raw broker: {} messages of {} bytes on {partitions} partitions ({}), one group reading (fetch wait 100 ms): produced {:.0}/s, produced and read {:.0}/s, produce→read p50 {:.0} ms p99 {:.0} ms",
        raw.messages,
        raw.size,
        shape.describe(),
        raw.produced_per_s,
        raw.through_per_s,
        raw.p50_ms,
        raw.p99_ms
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // Stopped by a signal, it still stops the processes it started (they
    // are killed when the run's state drops).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        done = run() => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    }
}

async fn run() -> anyhow::Result<()> {
    let rates: Vec<f64> = std::env::var("LOAD_RATES")
        .unwrap_or_else(|_| "20,50,100,200,500,1000".into())
        .split(',')
        .map(|r| r.trim().parse::<f64>().map_err(|e| anyhow::anyhow!("LOAD_RATES: {r:?} is not a rate: {e}")))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(rates.iter().all(|r| *r > 0.0), "LOAD_RATES: every rate must be above 0");
    let seconds: f64 = env("LOAD_SECONDS", 20.0);
    let drain = Duration::from_secs_f64(env("LOAD_DRAIN_SECONDS", 60.0));
    let max_rate: f64 = env("LOAD_MAX_RATE", 4000.0);
    let raw_messages: u64 = env("LOAD_RAW_MESSAGES", 30_000);
    let platforms: Vec<String> = std::env::var("LOAD_PLATFORMS")
        .unwrap_or_else(|_| "county:xicheng,street:xc-xinjiekou".into())
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let running: Vec<PlatformId> = std::iter::once(Ok(PlatformId::City))
        .chain(platforms.iter().map(|p| PlatformId::parse(p).map_err(|e| anyhow::anyhow!("LOAD_PLATFORMS: {p}: {e}"))))
        .collect::<anyhow::Result<_>>()?;

    let infra = whistle_tests::infra();
    if std::env::var("LOAD_RAW_ONLY").is_ok_and(|v| v == "1") {
        let prefix = format!("raw-{}.", time::OffsetDateTime::now_utc().unix_timestamp());
        let kafka =
            KafkaConfig { brokers: infra.brokers.clone(), topic_prefix: prefix.clone(), group_prefix: prefix, ..Default::default() };
        let shape = raw::Shape::from_env();
        let raw = raw::ceiling(&kafka, 6, env("LOAD_RAW_SIZE", 270), raw_messages, &shape).await?;
        print_raw(&raw, 6, &shape);
        return Ok(());
    }
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let prefix = format!("load-{stamp}.");
    let dir = whistle_tests::repo_root().join(format!(".local/load/{stamp}"));
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
        replicas: 1,
    })?;
    processes.wait_ready(Duration::from_secs(180)).await?;
    let kafka =
        KafkaConfig { brokers: infra.brokers.clone(), topic_prefix: prefix.clone(), group_prefix: prefix.clone(), ..Default::default() };
    let partitions = observe::ends(&kafka, &whistle_runtime::Topics::new(&kafka).events()).len() as i32;
    anyhow::ensure!(partitions > 0, "the events topic has no partitions on {}", infra.brokers);
    let watcher = Watcher::start(&kafka, &running)?;
    let group_names: Vec<String> = processes.groups.iter().map(|(_, g)| g.clone()).collect();
    let sla_group = format!("{prefix}sla-timer");
    let commits = Commits::start(&kafka, &group_names, &sla_group, partitions)?;
    let mut pids = processes.pids();
    pids.extend(procs::infra_pids());
    let run = Run { kafka: kafka.clone(), sla_group, groups: processes.groups.clone(), watcher, receiver, commits, pids };
    let clients = Clients::connect(&processes.intake, processes.desks.clone(), &processes.revisit).await?;
    let corpus = offer::corpus()?;
    let mix = Mix { complete: 0.3, revisit: 0.6, unsatisfied: 0.2, extend: 0.1 };
    let actions = Arc::new(Actions::default());
    let follower = offer::follow(clients.clone(), &run.watcher, mix, actions.clone());

    let mut langs: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &corpus {
        *langs.entry(s.language.as_str()).or_default() += 1;
    }
    println!(
        "Whistle load: {} processes ({}), broker {} ({}, consumers' fetch wait {} ms), redis {}; config and logs in {}",
        processes.procs.len(),
        processes.procs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        infra.brokers,
        std::env::var("WHISTLE_BROKER").unwrap_or_else(|_| "tansu".into()),
        std::env::var("WHISTLE__KAFKA__FETCH_WAIT_MS").unwrap_or_else(|_| "100".into()),
        infra.redis_url,
        dir.display()
    );
    println!(
        "Requests: the corpus's {} ({}), Poisson arrivals; of the dispatched tickets {:.0}% completed by their unit ({:.0}% of those revisited, {:.0}% unsatisfied), {:.0}% given an extension. Each rate {seconds:.0} s.",
        corpus.len(),
        langs.iter().map(|(l, n)| format!("{l} {:.0}%", 100.0 * *n as f64 / corpus.len() as f64)).collect::<Vec<_>>().join(", "),
        100.0 * mix.complete,
        100.0 * mix.revisit,
        100.0 * mix.unsatisfied,
        100.0 * mix.extend
    );
    println!(
        "Latencies from the submit call, in ms: through = dispatched with its timers armed (the sla-timer's group committed past `dispatched`), the unit's webhook and the citizen's SMS delivered (or left on triage, or handed to a platform not in this run).\n"
    );

    let mut arrivals = Arrivals { rng: Rng::new(0x12345), phones: 0 };
    // Warm-up: group joins and first connections are not measured.
    let warm = run.stage(&clients, &corpus, 5.0, 4.0, drain, &mut arrivals).await;
    processes.check_alive()?;
    anyhow::ensure!(
        warm.drained,
        "warm-up: {} of {} tickets got through within {drain:?}; the others: {}",
        warm.through,
        warm.offered.tracked.len(),
        run.stuck(&warm.offered)
    );

    print_header();
    let mut stages: Vec<Stage> = Vec::new();
    let mut queue: std::collections::VecDeque<f64> = rates.iter().copied().collect();
    while let Some(rate) = queue.pop_front() {
        let s = run.stage(&clients, &corpus, rate, seconds, drain, &mut arrivals).await;
        processes.check_alive()?;
        run.print(&s);
        let held = s.held();
        if !s.drained {
            println!("|  not through after the drain: {} |", run.stuck(&s.offered));
        }
        if !s.offered.first_refusals.is_empty() {
            println!("|  refused, e.g.: {} |", s.offered.first_refusals.join("; "));
        }
        stages.push(s);
        if !held {
            break;
        }
        if queue.is_empty() && rate * 1.5 <= max_rate {
            queue.push_back((rate * 1.5).round());
        }
        // Let the platform settle before the next rate.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    follower.abort();
    print_usage(&stages);
    let last = stages.last().expect("a stage");
    println!("\nLag at the end of the {:.0}/s window, per consumer group (events not yet committed):", last.rate);
    println!("  {}", last.lag_at_end.iter().map(|(n, l)| format!("{n} {l}")).collect::<Vec<_>>().join(", "));
    let (events, undecodable, size) = {
        let topic = run.watcher.topic.lock().unwrap();
        (topic.events, topic.undecodable, (topic.payload_bytes / topic.events.max(1)) as usize)
    };
    println!(
        "Events seen on the topic: {} (mean payload {size} bytes, {} undecodable); units and agents: {} completed, {} revisited, {} extensions granted, {} actions failed{}",
        events,
        undecodable,
        actions.completed.load(Ordering::Relaxed),
        actions.revisited.load(Ordering::Relaxed),
        actions.extensions.load(Ordering::Relaxed),
        actions.failed.load(Ordering::Relaxed),
        {
            let f = actions.first_failures.lock().unwrap();
            if f.is_empty() { String::new() } else { format!(" (e.g. {})", f.join("; ")) }
        }
    );
    // The raw broker, the same machine and run, with the platform and the
    // run's own readers stopped and their groups' sessions over.
    drop(processes);
    drop(run);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let shape = raw::Shape::from_env();
    let raw = raw::ceiling(&kafka, partitions, size, raw_messages, &shape).await?;
    print_raw(&raw, partitions, &shape);

    let held: Vec<&Stage> = stages.iter().filter(|s| s.held()).collect();
    let best = held.iter().max_by(|a, b| a.achieved().total_cmp(&b.achieved())).copied();
    let at = stages.iter().find(|s| s.rate == 200.0 && s.held()).or(best).unwrap_or(&stages[0]);
    let (sustained, ratio_stage) = match best {
        Some(b) => (b.achieved(), b),
        None => (0.0, &stages[0]),
    };
    let p99 = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        pct(&v, 0.99)
    };
    println!(
        "load: {:.0} tickets/s sustained, submit p99 {} ms and intake→dispatched p99 {} ms at {:.0}/s, {:.3} of the raw broker",
        sustained,
        ms(p99(&at.submit)),
        ms(p99(&at.dispatched)),
        at.rate,
        ratio_stage.messages_per_s / raw.through_per_s
    );
    Ok(())
}
