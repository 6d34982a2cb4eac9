//! What an ops team and Kubernetes see of each service, on the real broker
//! and Redis: its metrics show the lag of its consumer groups (draining to
//! zero), what it handled and what it dead-lettered; `/healthz` and
//! `/readyz` answer; every gRPC server answers `grpc.health.v1` and lists
//! its services by reflection.

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
