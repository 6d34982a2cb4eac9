//! The load: requests from the project's corpus (five languages, as
//! citizens speak and write) arriving open-loop, at a fixed Poisson rate
//! whatever the answers do, and what units and revisit agents do with the
//! tickets: some completed, some of those revisited (satisfied or not),
//! some extensions asked and granted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient};

use crate::observe::{Dispatch, Watcher};
use crate::procs::token;

type Intake = IntakeClient<InterceptedService<Channel, whistle_proto::Bearer>>;
type Desk = DeskClient<InterceptedService<Channel, whistle_proto::Bearer>>;
type Revisits = RevisitClient<InterceptedService<Channel, whistle_proto::Bearer>>;

/// One request of the corpus.
#[derive(Debug, Clone)]
pub struct Sample {
    pub text: String,
    pub address: String,
    pub language: String,
}

/// Every request of `services/classifier/corpus` (labels are not used).
pub fn corpus() -> anyhow::Result<Vec<Sample>> {
    let dir = whistle_tests::repo_root().join("services/classifier/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "jsonl"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f)?.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            out.push(Sample { text: s("text"), address: s("address"), language: s("language") });
        }
    }
    anyhow::ensure!(!out.is_empty(), "no requests in {}", dir.display());
    Ok(out)
}

/// A small deterministic generator (xorshift64*), so runs offer the same load.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// The arrivals' generator and the next citizen's phone.
#[derive(Debug, Clone)]
pub struct Arrivals {
    pub rng: Rng,
    pub phones: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential gap with this mean rate (Poisson arrivals).
    pub fn gap(&mut self, rate: f64) -> Duration {
        Duration::from_secs_f64(-(1.0 - self.unit()).ln() / rate)
    }
}

/// Where the run's callers reach the platform.
#[derive(Clone)]
pub struct Clients {
    intake: Vec<Intake>,
    /// Desk clients by (platform, caller).
    desks: HashMap<String, String>,
    revisit: Revisits,
    desk_cache: Arc<Mutex<HashMap<(String, String), Desk>>>,
}

impl Clients {
    pub async fn connect(intake: &str, desks: HashMap<String, String>, revisit: &str) -> anyhow::Result<Clients> {
        let bearer = |caller: &str| whistle_proto::Bearer::new(Some(&token(caller))).expect("token");
        let mut intakes = Vec::new();
        // A few connections, as a call center's many agents would hold.
        for _ in 0..4 {
            let ch = Channel::from_shared(intake.to_owned())?.connect().await?;
            intakes.push(IntakeClient::with_interceptor(ch, bearer("agent:load")));
        }
        let ch = Channel::from_shared(revisit.to_owned())?.connect().await?;
        Ok(Clients {
            intake: intakes,
            desks,
            revisit: RevisitClient::with_interceptor(ch, bearer("agent:load")),
            desk_cache: Arc::default(),
        })
    }

    pub fn intake(&self, i: usize) -> Intake {
        self.intake[i % self.intake.len()].clone()
    }

    /// The desk of `platform`, as `caller`.
    async fn desk(&self, platform: &str, caller: &str) -> anyhow::Result<Desk> {
        let key = (platform.to_owned(), caller.to_owned());
        if let Some(d) = self.desk_cache.lock().unwrap().get(&key) {
            return Ok(d.clone());
        }
        let addr = self.desks.get(platform).or_else(|| self.desks.get("city")).expect("the city desk");
        let ch = Channel::from_shared(addr.clone())?.connect().await?;
        let d = DeskClient::with_interceptor(ch, whistle_proto::Bearer::new(Some(&token(caller)))?);
        self.desk_cache.lock().unwrap().insert(key, d.clone());
        Ok(d)
    }
}

/// A request the platform answered with a ticket number.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub number: String,
    pub started: Instant,
    pub acked: Instant,
}

/// What one rate's window offered and got back.
#[derive(Debug, Default)]
pub struct Offered {
    /// By ticket id.
    pub tracked: HashMap<String, Tracked>,
    pub offered: u64,
    pub refused: u64,
    pub first_refusals: Vec<String>,
    /// When the last arrival was due, from the window's start.
    pub window: Duration,
    /// Arrivals sent more than 10 ms after they were due (the generator
    /// itself fell behind: the figures then understate the load).
    pub late: u64,
}

/// Offers `rate` requests a second, Poisson, for `seconds`; returns when
/// every request of the window has been answered (or given up after 30 s).
pub async fn offer(clients: &Clients, corpus: &[Sample], rate: f64, seconds: f64, arrivals: &mut Arrivals) -> Offered {
    let rng = &mut arrivals.rng;
    let out = Arc::new(Mutex::new(Offered::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut due = start;
    let mut tasks = Vec::new();
    let mut i = 0usize;
    loop {
        due += rng.gap(rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sample = &corpus[(rng.next() % corpus.len() as u64) as usize];
        let n = arrivals.phones;
        arrivals.phones += 1;
        let req = pb::SubmitRequestRequest {
            channel: "phone".into(),
            text: sample.text.clone(),
            address: sample.address.clone(),
            language: sample.language.clone(),
            citizen_name: "负载测试".into(),
            citizen_phone: format!("139{:08}", n % 100_000_000),
            ..Default::default()
        };
        let mut client = clients.intake(i);
        i += 1;
        let out = out.clone();
        let late = due.elapsed() > Duration::from_millis(10);
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(30), client.submit_request(req)).await;
            let acked = Instant::now();
            let mut o = out.lock().unwrap();
            o.offered += 1;
            o.late += u64::from(late);
            match answer {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    o.tracked.insert(r.ticket_id, Tracked { number: r.ticket_number, started, acked });
                }
                Ok(Err(status)) => {
                    o.refused += 1;
                    if o.first_refusals.len() < 3 {
                        o.first_refusals.push(format!("{}: {}", status.code(), status.message()));
                    }
                }
                Err(_) => {
                    o.refused += 1;
                    if o.first_refusals.len() < 3 {
                        o.first_refusals.push("no answer within 30 s".into());
                    }
                }
            }
        }));
    }
    let window = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let mut o = std::mem::take(&mut *out.lock().unwrap());
    o.window = window;
    o
}

/// What the units, desks and revisit agents did, and how often it failed.
#[derive(Debug, Default)]
pub struct Actions {
    pub completed: AtomicU64,
    pub revisited: AtomicU64,
    pub extensions: AtomicU64,
    pub failed: AtomicU64,
    pub first_failures: Mutex<Vec<String>>,
}

impl Actions {
    fn fail(&self, what: &str, e: impl std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_failures.lock().unwrap();
        if f.len() < 5 {
            f.push(format!("{what}: {e}"));
        }
    }
}

/// Tries `call` every 250 ms for up to 15 s while it fails (the desk or
/// the revisit queue may not have seen the ticket's last event yet).
async fn patiently<F, Fut, T>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < until && e.code() != tonic::Code::InvalidArgument => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => return Err(e),
        }
    }
}

/// Shares of the dispatched tickets the units complete, of the completed
/// ones the agents revisit, of those the citizen is unsatisfied with, and
/// of the dispatched tickets whose unit asks (and is granted) more time.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub complete: f64,
    pub revisit: f64,
    pub unsatisfied: f64,
    pub extend: f64,
}

/// Acts on every ticket as it is dispatched, in the mix's shares.
pub fn follow(clients: Clients, watcher: &Watcher, mix: Mix, actions: Arc<Actions>) -> tokio::task::JoinHandle<()> {
    let mut rx = watcher.dispatched.subscribe();
    tokio::spawn(async move {
        let mut rng = Rng::new(0x5eed_f011);
        loop {
            let (id, d) = match rx.recv().await {
                Ok(v) => v,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    actions.fail("follow", format!("{n} dispatches missed"));
                    continue;
                }
                Err(_) => return,
            };
            let roll = rng.unit();
            let (revisit, unsatisfied, delay) = (rng.unit() < mix.revisit, rng.unit() < mix.unsatisfied, 0.5 + 1.5 * rng.unit());
            let (clients, actions) = (clients.clone(), actions.clone());
            if roll < mix.complete {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                    complete(&clients, &actions, &id, &d, revisit, unsatisfied).await
                });
            } else if roll < mix.complete + mix.extend {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(delay)).await;
                    extend(&clients, &actions, &id, &d).await
                });
            }
        }
    })
}

async fn complete(clients: &Clients, actions: &Actions, id: &str, d: &Dispatch, revisit: bool, unsatisfied: bool) {
    let platform = d.platform.to_string();
    let desk = match clients.desk(&platform, &format!("unit:{}", d.unit)).await {
        Ok(desk) => desk,
        Err(e) => return actions.fail("connect", e),
    };
    let done = patiently(|| {
        let mut desk = desk.clone();
        async move { desk.complete(pb::CompleteRequest { ticket: id.into(), unit: String::new(), result: "已处理完毕".into() }).await }
    })
    .await;
    if let Err(e) = done {
        return actions.fail("complete", e);
    }
    actions.completed.fetch_add(1, Ordering::Relaxed);
    if !revisit {
        return;
    }
    let (outcome, reason) = if unsatisfied { ("unsatisfied", "问题还没有解决") } else { ("satisfied", "") };
    let recorded = patiently(|| {
        let mut r = clients.revisit.clone();
        async move { r.record(pb::RecordRequest { ticket: id.into(), outcome: outcome.into(), reason: reason.into() }).await }
    })
    .await;
    match recorded {
        Ok(_) => drop(actions.revisited.fetch_add(1, Ordering::Relaxed)),
        Err(e) => actions.fail("revisit", e),
    }
}

async fn extend(clients: &Clients, actions: &Actions, id: &str, d: &Dispatch) {
    let platform = d.platform.to_string();
    let (unit, desk) = match (clients.desk(&platform, &format!("unit:{}", d.unit)).await, clients.desk(&platform, &platform).await) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(e), _) | (_, Err(e)) => return actions.fail("connect", e),
    };
    let due = Some(whistle_proto::timestamp(d.due_at + time::Duration::days(2)));
    let asked = patiently(|| {
        let mut unit = unit.clone();
        async move {
            unit.request_extension(pb::ExtensionRequest {
                ticket: id.into(), reason: "需要协调施工队".into(), requested_due_at: due
            })
            .await
        }
    })
    .await;
    if let Err(e) = asked {
        return actions.fail("ask an extension", e);
    }
    let granted =
        patiently(|| {
            let mut desk = desk.clone();
            async move {
                desk.decide_extension(pb::ExtensionDecision { ticket: id.into(), grant: true, due_at: due, note: "同意".into() }).await
            }
        })
        .await;
    match granted {
        Ok(_) => drop(actions.extensions.fetch_add(1, Ordering::Relaxed)),
        Err(e) => actions.fail("grant an extension", e),
    }
}
