//! Telemetry in one place: structured logs filtered by `RUST_LOG`,
//! OpenTelemetry spans (exported by OTLP when an endpoint is configured), and
//! W3C `traceparent` propagation through Kafka headers and gRPC metadata, so
//! one ticket's journey is one trace. Nothing here records a citizen's name or
//! phone: spans carry ids only.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{Error, Result, TelemetryConfig};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Flushes spans when dropped (at the end of `main`).
#[derive(Debug)]
pub struct TelemetryGuard(());

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = PROVIDER.get()
            && let Err(e) = p.force_flush()
        {
            eprintln!("telemetry flush failed: {e}");
        }
    }
}

/// Installs logging and tracing for the process. Safe to call more than once
/// (tests run several services in one process): later calls change nothing.
pub fn init(service: &str, cfg: &TelemetryConfig) -> Result<TelemetryGuard> {
    install(service, cfg, false)
}

/// For tests: logs at `warn` (or `RUST_LOG`) through the test harness's
/// capture, and the same span context and propagation as the services.
pub fn init_for_tests() {
    let _ = install("whistle-tests", &TelemetryConfig::default(), true);
}

fn install(service: &str, cfg: &TelemetryConfig, for_tests: bool) -> Result<TelemetryGuard> {
    let mut builder =
        SdkTracerProvider::builder().with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build());
    if let Some(endpoint) = cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| Error::Telemetry(format!("otlp exporter for {endpoint}: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service.to_owned());
    if PROVIDER.set(provider.clone()).is_ok() {
        opentelemetry::global::set_tracer_provider(provider);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        // The log filter applies to logs only: spans at info and above always
        // reach OpenTelemetry, so a quiet RUST_LOG never breaks a trace.
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(if for_tests { "warn" } else { "info" }));
        // A subscriber may already be installed (tests); that is fine.
        let _ = if for_tests {
            let fmt = tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter);
            let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO);
            tracing_subscriber::registry().with(fmt).with(otel).try_init()
        } else {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter);
            let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO);
            tracing_subscriber::registry().with(fmt).with(otel).try_init()
        };
    }
    Ok(TelemetryGuard(()))
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct OneHeader<'a>(Option<&'a str>);

impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == "traceparent" { self.0 } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The W3C `traceparent` of the current span, to put in a Kafka header or
/// gRPC metadata.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut MapCarrier(&mut map));
    map.remove("traceparent")
}

/// Makes `span` a child of the remote span named by `traceparent`.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if traceparent.is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&OneHeader(traceparent));
    let _ = span.set_parent(cx);
}

/// Server side of gRPC: a span per request, child of the caller's
/// `traceparent` metadata. Use with `Server::builder().trace_fn(grpc_span)`.
pub fn grpc_span(req: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc", path = %req.uri().path());
    set_parent(&span, req.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    span
}

/// Client side of gRPC: an interceptor that sends the current span's
/// `traceparent`.
pub fn inject_grpc(mut req: tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> {
    if let Some(tp) = current_traceparent()
        && let Ok(v) = tp.parse()
    {
        req.metadata_mut().insert("traceparent", v);
    }
    Ok(req)
}
