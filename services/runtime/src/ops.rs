//! What an operator and Kubernetes see of a service, on its own HTTP port
//! (`ops_listen` in the service's section): Prometheus metrics at
//! `/metrics`, `/healthz` (the process serves) and `/readyz` (it reaches the
//! broker and Redis, and every consumer of it has joined its group and is at
//! most `kafka.ready_max_lag` messages behind). Every
//! gRPC server also answers `grpc.health.v1` and server reflection
//! ([`grpc_health`], [`grpc_reflection`]).
//!
//! The consumer loop ([`crate::consumer`]) feeds the metrics every service
//! shares: consumer lag per group and partition (from librdkafka's
//! statistics), events handled and handler latency per event kind, retries,
//! and dead letters by reason. A service registers its own families with
//! [`Ops::register`].

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

use crate::{Error, EventProducer, Result, Shutdown};

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    group: String,
    event: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    group: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client: &'static str,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    group: String,
    reason: &'static str,
}

/// Why a message went to the dead-letter topic, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The handler said it can never be processed (it does not decode, it
    /// breaks a rule).
    Poison,
    /// The handler panicked on it.
    Panicked,
    /// Every retry failed.
    RetriesExhausted,
}

impl DeadLetterReason {
    fn label(self) -> &'static str {
        match self {
            DeadLetterReason::Poison => "poison",
            DeadLetterReason::Panicked => "panicked",
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// One consumer group of the process, as readiness sees it.
#[derive(Debug, Default)]
struct GroupState {
    joined: bool,
    partitions: usize,
    /// The latest lag of each partition it holds.
    lags: BTreeMap<(String, i32), i64>,
    /// Ready while at most this many messages behind.
    max_lag: i64,
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

struct Families {
    lag: Family<PartitionLabels, Gauge>,
    members: Family<GroupLabels, Gauge>,
    assigned: Family<GroupLabels, Gauge>,
    handled: Family<HandledLabels, Counter>,
    handler_seconds: Family<EventLabels, Histogram, fn() -> Histogram>,
    retries: Family<GroupLabels, Counter>,
    dead_letters: Family<ReasonLabels, Counter>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_seconds: Family<MethodLabels, Histogram, fn() -> Histogram>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    client_errors: Family<ClientLabels, Counter>,
    resident_bytes: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    open_fds: Gauge,
    threads: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

struct Inner {
    service: &'static str,
    registry: RwLock<Registry>,
    families: Families,
    checks: Mutex<Vec<(&'static str, Check)>>,
    /// Consumer groups of this process: joined or not, and how far behind.
    groups: Mutex<BTreeMap<String, GroupState>>,
}

/// One service's metrics and readiness. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

fn handler_buckets() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Ops {
    pub fn new(service: &'static str) -> Ops {
        let families = Families {
            lag: Family::default(),
            members: Family::default(),
            assigned: Family::default(),
            handled: Family::default(),
            handler_seconds: Family::new_with_constructor(handler_buckets),
            retries: Family::default(),
            dead_letters: Family::default(),
            grpc_requests: Family::default(),
            grpc_seconds: Family::new_with_constructor(handler_buckets),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(handler_buckets),
            client_errors: Family::default(),
            resident_bytes: Gauge::default(),
            cpu_seconds: Gauge::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
            start_time: Gauge::default(),
        };
        let mut r = Registry::default();
        let f = &families;
        r.register(
            "whistle_consumer_lag",
            "Messages on the partition not yet committed by the group (the high watermark minus the committed offset)",
            f.lag.clone(),
        );
        r.register("whistle_consumer_joined", "1 once this consumer has joined its group", f.members.clone());
        r.register("whistle_consumer_partitions", "Partitions assigned to this consumer", f.assigned.clone());
        r.register("whistle_events_handled", "Messages handled, by event kind and outcome (ok, dead_lettered)", f.handled.clone());
        r.register("whistle_handler_seconds", "Time to handle one message, retries included", f.handler_seconds.clone());
        r.register("whistle_handler_retries", "Retries of a message whose handling failed for a reason that may pass", f.retries.clone());
        r.register("whistle_dead_letters", "Messages sent to the dead-letter topic, by reason", f.dead_letters.clone());
        r.register("whistle_grpc_requests", "gRPC requests served, by method and status code", f.grpc_requests.clone());
        r.register("whistle_grpc_request_seconds", "Time to answer a gRPC request", f.grpc_seconds.clone());
        r.register("whistle_http_requests", "HTTP requests served, by route, method and status", f.http_requests.clone());
        r.register("whistle_http_request_seconds", "Time to answer an HTTP request", f.http_seconds.clone());
        r.register(
            "whistle_client_errors",
            "Errors the Kafka client reported (broker down, authentication, ...) and Redis errors (readiness checks, handlers' retries)",
            f.client_errors.clone(),
        );
        r.register("process_resident_memory_bytes", "Resident memory", f.resident_bytes.clone());
        r.register("process_cpu_seconds", "User and system CPU time used", f.cpu_seconds.clone());
        r.register("process_open_fds", "Open file descriptors", f.open_fds.clone());
        r.register("process_threads", "Threads", f.threads.clone());
        r.register("process_start_time_seconds", "Start time, seconds since the Unix epoch", f.start_time.clone());
        let started = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        families.start_time.set(started);
        Ops { inner: Arc::new(Inner { service, registry: RwLock::new(r), families, checks: Mutex::default(), groups: Mutex::default() }) }
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// Adds a service's own metric (a family of counters, gauges, ...).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.inner.registry.write().unwrap_or_else(|e| e.into_inner()).register(name, help, metric);
    }

    /// Adds a readiness check: `/readyz` answers 503 while it fails.
    pub fn check(
        &self,
        name: &'static str,
        check: impl Fn() -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync + 'static,
    ) {
        self.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).push((name, Arc::new(check)));
    }

    /// Ready only while Redis answers PING (a failure counts as a Redis
    /// client error).
    pub fn check_redis<C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static>(&self, conn: C) {
        let ops = self.clone();
        self.check("redis", move || {
            let (mut conn, ops) = (conn.clone(), ops.clone());
            Box::pin(async move {
                redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop).map_err(|e| {
                    ops.redis_error(&e);
                    e.to_string()
                })
            })
        });
    }

    /// Counts an error a Redis command met, by its kind.
    pub fn redis_error(&self, e: &redis::RedisError) {
        let error = format!("{:?}", e.kind());
        self.inner.families.client_errors.get_or_create(&ClientLabels { client: "redis", error }).inc();
    }

    /// Ready only while the broker answers a metadata request.
    pub fn check_broker(&self, producer: EventProducer) {
        self.check("broker", move || {
            let producer = producer.clone();
            Box::pin(async move { producer.reachable(CHECK_TIMEOUT).await.map_err(|e| e.to_string()) })
        });
    }

    /// Runs every check; the failures, each with its reason.
    pub async fn readiness(&self) -> std::result::Result<(), Vec<String>> {
        let checks: Vec<(&'static str, Check)> = self.inner.checks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let runs = checks.iter().map(|(name, check)| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{name}: {e}")),
                Err(_) => Some(format!("{name}: no answer within {} s", CHECK_TIMEOUT.as_secs())),
            }
        });
        let mut failed: Vec<String> = futures::future::join_all(runs).await.into_iter().flatten().collect();
        for (group, g) in self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let behind: i64 = g.lags.values().sum();
            if !g.joined {
                failed.push(format!("consumer group {group}: not joined yet"));
            } else if g.lags.len() < g.partitions {
                failed.push(format!(
                    "consumer group {group}: the lag of {} of its {} partitions is not known yet",
                    g.partitions - g.lags.len(),
                    g.partitions
                ));
            } else if behind > g.max_lag {
                failed.push(format!("consumer group {group}: {behind} messages behind (ready at {} or fewer)", g.max_lag));
            }
        }
        if failed.is_empty() { Ok(()) } else { Err(failed) }
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn render(&self) -> String {
        self.sample_process();
        let mut out = String::new();
        let registry = self.inner.registry.read().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }

    fn sample_process(&self) {
        let f = &self.inner.families;
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            if let Some(kb) = field("VmRSS:") {
                f.resident_bytes.set(kb * 1024);
            }
            if let Some(n) = field("Threads:") {
                f.threads.set(n);
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // The fields after the command name (which may hold spaces):
            // utime and stime are the 12th and 13th, in clock ticks (100 a
            // second on Linux).
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                f.cpu_seconds.set((ticks(11) + ticks(12)) / 100.0);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            f.open_fds.set(dir.count() as i64);
        }
    }

    // What the consumer loop reports.

    pub(crate) fn consumer_started(&self, group: &str, max_lag: i64) {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_owned(), GroupState { max_lag, ..GroupState::default() });
        self.inner.families.members.get_or_create(&GroupLabels { group: group.to_owned() }).set(0);
    }

    pub(crate) fn consumer_assigned(&self, group: &str, partitions: usize) {
        if let Some(g) = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).get_mut(group) {
            g.joined = true;
            g.partitions = partitions;
        }
        let labels = GroupLabels { group: group.to_owned() };
        self.inner.families.members.get_or_create(&labels).set(1);
        self.inner.families.assigned.get_or_create(&labels).set(partitions as i64);
    }

    pub(crate) fn consumer_stopped(&self, group: &str) {
        self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).remove(group);
        let labels = GroupLabels { group: group.to_owned() };
        self.inner.families.members.get_or_create(&labels).set(0);
        self.inner.families.assigned.get_or_create(&labels).set(0);
    }

    pub(crate) fn lag(&self, group: &str, topic: &str, partition: i32, lag: Option<i64>) {
        if let Some(g) = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).get_mut(group) {
            match lag {
                Some(lag) => g.lags.insert((topic.to_owned(), partition), lag),
                None => g.lags.remove(&(topic.to_owned(), partition)),
            };
        }
        let labels = PartitionLabels { group: group.to_owned(), topic: topic.to_owned(), partition };
        match lag {
            Some(lag) => {
                self.inner.families.lag.get_or_create(&labels).set(lag);
            }
            None => {
                self.inner.families.lag.remove(&labels);
            }
        }
    }

    pub(crate) fn handled(&self, group: &str, event: &str, dead_lettered: bool, took: Duration) {
        let f = &self.inner.families;
        let event = event_label(event);
        let outcome = if dead_lettered { "dead_lettered" } else { "ok" };
        f.handled.get_or_create(&HandledLabels { group: group.to_owned(), event: event.clone(), outcome }).inc();
        f.handler_seconds.get_or_create(&EventLabels { group: group.to_owned(), event }).observe(took.as_secs_f64());
    }

    pub(crate) fn retried(&self, group: &str, reason: &str) {
        self.inner.families.retries.get_or_create(&GroupLabels { group: group.to_owned() }).inc();
        if reason.starts_with("redis: ") {
            self.inner.families.client_errors.get_or_create(&ClientLabels { client: "redis", error: "handler".into() }).inc();
        }
    }

    pub(crate) fn client_error(&self, client: &'static str, error: &rdkafka::error::KafkaError) {
        // The code, not the message: a bounded label.
        let error = match error.rdkafka_error_code() {
            Some(code) => format!("{code:?}"),
            None => "other".to_owned(),
        };
        self.inner.families.client_errors.get_or_create(&ClientLabels { client, error }).inc();
    }

    fn grpc_answered(&self, method: String, code: &'static str, took: Duration) {
        let f = &self.inner.families;
        f.grpc_seconds.get_or_create(&MethodLabels { method: method.clone() }).observe(took.as_secs_f64());
        f.grpc_requests.get_or_create(&GrpcLabels { method, code }).inc();
    }

    fn http_answered(&self, route: String, method: String, status: u16, took: Duration) {
        let f = &self.inner.families;
        f.http_seconds.get_or_create(&RouteLabels { route: route.clone() }).observe(took.as_secs_f64());
        f.http_requests.get_or_create(&HttpLabels { route, method, status }).inc();
    }

    /// Counts and times every gRPC request of a server:
    /// `Server::builder().layer(ops.grpc_layer())`.
    pub fn grpc_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer { ops: self.clone() }
    }

    pub(crate) fn dead_lettered(&self, group: &str, reason: DeadLetterReason) {
        self.inner.families.dead_letters.get_or_create(&ReasonLabels { group: group.to_owned(), reason: reason.label() }).inc();
    }
}

/// An event kind as a label: the header's value when it looks like one, so
/// a crafted header cannot grow the label set without bound.
fn event_label(event: &str) -> String {
    let plain = !event.is_empty() && event.len() <= 40 && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
    if plain {
        event.to_owned()
    } else if event.is_empty() {
        "none".into()
    } else {
        "other".into()
    }
}

/// A gRPC status code's name, from the `grpc-status` header.
fn grpc_code(code: &str) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    code.parse::<usize>().ok().and_then(|c| NAMES.get(c).copied()).unwrap_or("UNKNOWN")
}

/// See [`Ops::grpc_layer`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    ops: Ops,
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, ops: self.ops.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    ops: Ops,
}

impl<S, B, R> tower_service::Service<axum::http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, std::result::Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let started = std::time::Instant::now();
        let answer = self.inner.call(req);
        let ops = self.ops.clone();
        Box::pin(async move {
            let r = answer.await;
            // A failed call answers with its status in the headers (a
            // trailers-only response); a call that succeeds, in the trailers.
            let code = match &r {
                Ok(resp) => resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map_or("OK", grpc_code),
                Err(_) => "UNAVAILABLE",
            };
            // A path no service has is one label, whatever the caller sent.
            let method = if code == "UNIMPLEMENTED" { "unknown".to_owned() } else { method };
            ops.grpc_answered(method, code, started.elapsed());
            r
        })
    }
}

/// Counts and times every HTTP request by its route (the pattern, never the
/// path: no ticket number or token in a label). Add with
/// `.route_layer(axum::middleware::from_fn_with_state(ops, ops::track_http))`.
pub async fn track_http(
    axum::extract::State(ops): axum::extract::State<Ops>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    ops.http_answered(route, method, resp.status().as_u16(), started.elapsed());
    resp
}

/// The ops HTTP port, bound but not yet serving.
pub struct OpsServer {
    listener: TcpListener,
    ops: Ops,
}

impl OpsServer {
    pub async fn bind(addr: SocketAddr, ops: Ops) -> Result<OpsServer> {
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Config(format!("ops_listen: cannot listen on {addr}: {e}")))?;
        Ok(OpsServer { listener, ops })
    }

    /// A service's ops port with the checks every service has: ready while
    /// Redis and the broker answer.
    pub async fn for_service<C>(service: &'static str, addr: SocketAddr, redis: C, producer: &EventProducer) -> Result<OpsServer>
    where
        C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        let ops = Ops::new(service);
        ops.check_redis(redis);
        ops.check_broker(producer.clone());
        OpsServer::bind(addr, ops).await
    }

    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until shutdown, as a supervised task.
    pub fn spawn(self, shutdown: &Shutdown) -> tokio::task::JoinHandle<Result<()>> {
        let OpsServer { listener, ops } = self;
        let app = router(ops);
        let stop = shutdown.clone();
        crate::shutdown::spawn_supervised("ops-http", shutdown, async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.wait().await })
                .await
                .map_err(|e| Error::Config(format!("ops http: {e}")))
        })
    }
}

fn router(ops: Ops) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get({
                let ops = ops.clone();
                move || {
                    let ops = ops.clone();
                    async move { ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], ops.render()) }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ops = ops.clone();
                async move {
                    match ops.readiness().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                        Err(failed) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", failed.join("\n"))).into_response(),
                    }
                }
            }),
        )
}

/// `grpc.health.v1.Health` for a gRPC server: serving while the service
/// runs. Call [`HealthReporter::set_not_serving`] when shutdown begins.
pub fn grpc_health()
-> (tonic_health::server::HealthReporter, tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>) {
    tonic_health::server::health_reporter()
}

/// Server reflection (`grpc.reflection.v1`) of Whistle's services and the
/// health service, so `grpcurl list` works without the proto files.
pub fn grpc_reflection() -> Result<tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>>
{
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(whistle_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("grpc reflection: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crafted_event_header_does_not_become_a_label() {
        assert_eq!(event_label("received"), "received");
        assert_eq!(event_label(""), "none");
        assert_eq!(event_label("13800138000"), "other");
        assert_eq!(event_label(&"a".repeat(200)), "other");
    }

    #[tokio::test]
    async fn readiness_names_every_check_that_fails_and_every_group_not_joined_or_behind() {
        let ops = Ops::new("test");
        ops.check("redis", || Box::pin(async { Ok(()) }));
        ops.check("broker", || Box::pin(async { Err("connection refused".to_owned()) }));
        ops.consumer_started("g1", 100);
        let failed = ops.readiness().await.expect_err("not ready");
        assert_eq!(failed, ["broker: connection refused", "consumer group g1: not joined yet"]);
        ops.consumer_assigned("g1", 2);
        let failed = ops.readiness().await.expect_err("not ready");
        assert_eq!(failed[1], "consumer group g1: the lag of 2 of its 2 partitions is not known yet");
        ops.lag("g1", "t", 0, Some(80));
        ops.lag("g1", "t", 1, Some(30));
        assert_eq!(ops.readiness().await.expect_err("behind")[1], "consumer group g1: 110 messages behind (ready at 100 or fewer)");
        ops.lag("g1", "t", 1, Some(20));
        assert_eq!(ops.readiness().await.expect_err("still not ready"), ["broker: connection refused"], "caught up");
    }

    #[test]
    fn the_metrics_name_the_group_and_the_reason() {
        let ops = Ops::new("test");
        ops.consumer_started("g1", 1000);
        ops.consumer_assigned("g1", 3);
        ops.lag("g1", "ticket-events", 0, Some(42));
        ops.handled("g1", "received", false, Duration::from_millis(3));
        ops.dead_lettered("g1", DeadLetterReason::Panicked);
        let text = ops.render();
        assert!(text.contains(r#"whistle_consumer_lag{group="g1",topic="ticket-events",partition="0"} 42"#), "{text}");
        assert!(text.contains(r#"whistle_events_handled_total{group="g1",event="received",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"whistle_dead_letters_total{group="g1",reason="panicked"} 1"#), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        ops.lag("g1", "ticket-events", 0, None);
        assert!(!ops.render().contains("whistle_consumer_lag{"), "a revoked partition's lag is gone");
    }
}
