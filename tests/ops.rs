//! What an ops team and Kubernetes see of each service, on the real broker
//! and Redis: its metrics show the lag of its consumer groups (draining to
//! zero), what it handled and what it dead-lettered; `/healthz` and
//! `/readyz` answer; each counts what is its own (gRPC and HTTP requests,
//! messages sent, timers held); every gRPC server answers `grpc.health.v1`
//! and lists its services by reflection.

use std::time::Duration;
use tonic_reflection::pb::v1 as reflection;
use whistle_tests::wait::eventually;
use whistle_tests::{Platform, request};

const WAIT: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_millis(250);

/// Each service and the consumer groups it runs; `true`: on the events topic.
const SERVICES: &[(&str, &[(&str, bool)])] = &[
    ("intake", &[("intake-projector", true), ("intake-requests", false)]),
    ("classifier", &[("classifier", true)]),
    ("dispatcher:city", &[("dispatcher-city", true)]),
    ("sla-timer", &[("sla-timer", true)]),
    ("notifier", &[("notifier", true)]),
    ("revisit", &[("revisit", true), ("revisit-figures", true)]),
];

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// The samples of `metric` whose labels start with `group="<group>"`.
fn samples<'a>(text: &'a str, metric: &str, group: &str) -> Vec<&'a str> {
    let start = format!("{metric}{{group=\"{group}\"");
    text.lines().filter(|l| l.starts_with(&start)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_shows_the_lag_of_its_groups_and_says_it_is_ready() {
    let p = Platform::start("ops").await;
    let n = p
        .intake()
        .await
        .submit_request(request("自来水发黄，还有股铁锈味，烧开了有一层水垢", "东城区景山街道3号楼"))
        .await
        .expect("submit")
        .into_inner();
    p.wait_ticket(&n.ticket_number, WAIT, |v| v.state == "assigned").await;
    // A message nobody can read: every group of the events topic sets it aside.
    p.publish_raw("not-a-ticket", b"\xff\x00 not protobuf").await;

    for (service, groups) in SERVICES {
        let addr = p.ops[*service];
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()), "{service}");
        eventually(&format!("{service} ready"), WAIT, EVERY, || async move {
            let (status, body) = get(addr, "/readyz").await;
            if status == 200 { Ok(()) } else { Err((status, body)) }
        })
        .await;
        for (group, on_events) in *groups {
            let group = format!("{}{group}", p.prefix);
            // The lag of every partition it holds, down to zero once it has
            // committed what it handled.
            let lags = eventually(&format!("{service}: the lag of {group}, drained"), WAIT, EVERY, || {
                let group = group.clone();
                async move {
                    let (_, text) = get(addr, "/metrics").await;
                    let lags: Vec<String> = samples(&text, "whistle_consumer_lag", &group).into_iter().map(str::to_owned).collect();
                    // The events topic has six partitions.
                    let all = if *on_events { lags.len() == 6 } else { !lags.is_empty() };
                    if all && lags.iter().all(|l| l.ends_with(" 0")) { Ok(lags) } else { Err(lags) }
                }
            })
            .await;
            assert!(lags[0].contains("topic=\""), "{lags:?}");
            if !on_events {
                continue;
            }
            let (_, text) = get(addr, "/metrics").await;
            let handled = samples(&text, "whistle_events_handled_total", &group);
            assert!(
                handled.iter().any(|l| l.contains("event=\"received\"") && l.contains("outcome=\"ok\"")),
                "{service}: {group} counted the received event: {handled:?}"
            );
            let timed = samples(&text, "whistle_handler_seconds_count", &group);
            assert!(!timed.is_empty(), "{service}: {group} timed its handling");
            eventually(&format!("{service}: {group} counted the poison it dead-lettered"), WAIT, EVERY, || {
                let group = group.clone();
                async move {
                    let (_, text) = get(addr, "/metrics").await;
                    let dead: Vec<String> = samples(&text, "whistle_dead_letters_total", &group).into_iter().map(str::to_owned).collect();
                    if dead.iter().any(|l| l.contains("reason=\"poison\"} 1")) { Ok(()) } else { Err(dead) }
                }
            })
            .await;
        }
        let (_, text) = get(addr, "/metrics").await;
        let rss = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).expect("memory");
        assert!(rss.parse::<f64>().expect("a number") > 1e6, "{service}: {rss}");
    }

    // What each service adds of its own: the requests it answered, the
    // messages it sent, the timers it holds.
    let (status, _) = get(p.intake_http, "/open311/v2/services.json").await;
    assert_eq!(status, 200);
    let (_, intake) = get(p.ops["intake"], "/metrics").await;
    let submitted = r#"whistle_grpc_requests_total{method="/whistle.v1.Intake/SubmitRequest",code="OK"} 1"#;
    assert!(intake.lines().any(|l| l == submitted), "{submitted} in:\n{intake}");
    let listed = r#"whistle_http_requests_total{route="/open311/v2/{*path}",method="GET",status="200"} 1"#;
    assert!(intake.lines().any(|l| l == listed), "{listed} in:\n{intake}");
    p.sms.wait_for(1, WAIT, whistle_tests::webhook::is("ticket_received", &n.ticket_number)).await;
    eventually("the notifier counted the SMS it delivered", WAIT, EVERY, || async {
        let (_, text) = get(p.ops["notifier"], "/metrics").await;
        let sms: Vec<String> =
            text.lines().filter(|l| l.starts_with("whistle_messages_total{channel=\"sms\"")).map(str::to_owned).collect();
        if sms.iter().any(|l| l.contains("outcome=\"delivered\"")) { Ok(()) } else { Err(sms) }
    })
    .await;
    eventually("the sla-timer counted the assigned ticket's timers", WAIT, EVERY, || async {
        let (_, text) = get(p.ops["sla-timer"], "/metrics").await;
        let n = text.lines().find_map(|l| l.strip_prefix("whistle_timers_outstanding ")).map(str::to_owned);
        match n.as_deref().map(str::parse::<i64>) {
            Some(Ok(n)) if n >= 1 => Ok(()),
            _ => Err(n),
        }
    })
    .await;

    // The morning of its deadline: the ordinary ticket's warning has fallen
    // due and fired, and the sla-timer counts it.
    p.clock.set(time::macros::datetime!(2026-11-30 09:59 +08:00));
    eventually("the sla-timer counted the warning it fired", WAIT, EVERY, || async {
        let (_, text) = get(p.ops["sla-timer"], "/metrics").await;
        let fired: Vec<String> = text.lines().filter(|l| l.starts_with("whistle_timers_fired_total{")).map(str::to_owned).collect();
        if fired.is_empty() { Err(text) } else { Ok(()) }
    })
    .await;

    // The dashboard shipped in deploy/grafana asks only for metrics the
    // services export.
    let mut exported = String::new();
    for addr in p.ops.values() {
        exported += &get(*addr, "/metrics").await.1;
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whistle_tests::repo_root().join("deploy/grafana/whistle.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().expect("targets").iter().map(|t| t["expr"].as_str().expect("expr").to_owned()))
        .collect();
    assert!(exprs.len() >= 9, "{exprs:?}");
    for expr in &exprs {
        for word in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("whistle_") || w.starts_with("process_"))
        {
            let family = ["_total", "_bucket", "_count", "_sum"].iter().fold(word, |w, suffix| w.strip_suffix(suffix).unwrap_or(w));
            assert!(exported.contains(&format!("# TYPE {family} ")), "the dashboard's {expr} asks for {word}, which no service exports");
        }
    }

    for (name, addr) in [("whistle.v1.Intake", p.intake_addr), ("whistle.v1.Desk", p.desk_addr), ("whistle.v1.Revisit", p.revisit_addr)] {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health").into_inner();
        assert_eq!(status.status(), tonic_health::pb::health_check_response::ServingStatus::Serving, "{name}");

        let mut client = reflection::server_reflection_client::ServerReflectionClient::new(channel);
        let ask = reflection::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(reflection::server_reflection_request::MessageRequest::ListServices(String::new())),
        };
        let mut answers = client.server_reflection_info(futures::stream::iter([ask])).await.expect("reflection").into_inner();
        let answer = answers.message().await.expect("answer").expect("one answer");
        let Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("{name}: not a list of services: {answer:?}");
        };
        let listed: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [name, "grpc.health.v1.Health"] {
            assert!(listed.iter().any(|s| s == want), "{name}: reflection lists {listed:?}");
        }
    }
    p.shutdown().await;
}

/// A handler that waits at a gate until the test opens it.
struct Gated(tokio::sync::Semaphore);

impl whistle_runtime::consumer::Handler for Gated {
    async fn handle(&self, _: &whistle_runtime::consumer::Incoming) -> Result<(), whistle_runtime::consumer::HandleError> {
        let _pass = self.0.acquire().await.expect("the gate");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_far_behind_is_not_ready_until_it_has_caught_up() {
    let p = Platform::start_with("behind", whistle_tests::Options { only_revisit: true, ..Default::default() }).await;
    let topic = p.topics().intake_requests();
    for n in 0..5 {
        p.publish_to(&topic, "one-key", format!("request {n}").as_bytes()).await;
    }
    let shutdown = whistle_runtime::Shutdown::new();
    let ops = whistle_runtime::Ops::new("slow");
    let server = whistle_runtime::ops::OpsServer::bind(([127, 0, 0, 1], 0).into(), ops.clone()).await.expect("ops port");
    let addr = server.local_addr();
    let served = server.spawn(&shutdown);
    let kafka = whistle_runtime::KafkaConfig { ready_max_lag: 2, ..p.kafka.clone() };
    let gate = std::sync::Arc::new(Gated(tokio::sync::Semaphore::new(0)));
    let settings = whistle_runtime::consumer::ConsumerSettings::new(&ops, "slow-test", vec![topic.clone()]);
    let dlq = whistle_runtime::EventProducer::new(&p.kafka).expect("producer");
    let consumer = whistle_runtime::consumer::spawn("slow", &kafka, settings, gate.clone(), dlq, &shutdown);

    let said = eventually("readiness saying the group is behind", WAIT, EVERY, || async move {
        let (status, body) = get(addr, "/readyz").await;
        if status == 503 && body.contains("5 messages behind (ready at 2 or fewer)") { Ok(body) } else { Err((status, body)) }
    })
    .await;
    assert!(said.contains(&format!("consumer group {}slow-test", p.prefix)), "{said}");
    gate.0.add_permits(1000);
    eventually("ready once it has caught up", WAIT, EVERY, || async move {
        let (status, body) = get(addr, "/readyz").await;
        if status == 200 { Ok(()) } else { Err((status, body)) }
    })
    .await;
    shutdown.trigger();
    consumer.await.expect("joined").expect("drained");
    served.await.expect("joined").expect("served");
    p.shutdown().await;
}
