//! One trace per ticket across the services running as separate processes,
//! as deployed: each exports its spans by OTLP to a real collector (rotel,
//! recording what it receives), and the test reads them back. An urgent
//! request is received, classified, dispatched, falls overdue and the unit
//! is told, all under one trace id; no span or attribute holds the
//! citizen's phone or name.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use whistle_tests::wait::eventually;
use whistle_tests::webhook::is;
use whistle_tests::{Behaviour, WebhookReceiver, infra, repo_root, unique_prefix};
use whistle_tests::{free_port, tools};

const WAIT: Duration = Duration::from_secs(90);
const EVERY: Duration = Duration::from_millis(200);
const PHONE: &str = "13877776666";
const NAME: &str = "欧阳娜娜";

/// A built service binary (test.sh builds them before the tests).
fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("debug").join(name);
    assert!(p.exists(), "{} is missing: `cargo build --bins` builds it (deploy/local/test.sh does)", p.display());
    p
}

/// A child process stopped with SIGTERM (a service drains and flushes its
/// spans) when dropped.
struct Process {
    name: String,
    child: Child,
}

impl Process {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("{} did not stop within 30 s of SIGTERM", self.name);
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
        }
    }
}

fn spawn(name: &str, program: &Path, args: &[&str], env: &HashMap<String, String>, logs: &Path) -> Process {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log file");
    let child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Process { name: name.to_owned(), child }
}

fn spans(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a recorded span is not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_is_one_trace_across_the_services_and_no_span_holds_the_citizen() {
    let dir = std::env::temp_dir().join(unique_prefix("traces"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spans_file = dir.join("spans.jsonl");

    // The collector: OTLP/gRPC on loopback, every span it receives written down.
    let otlp: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let collector_env: HashMap<String, String> = [("WHISTLE_SPANS_FILE".to_owned(), spans_file.display().to_string())].into();
    let recorder = repo_root().join("deploy/local/otlp_record.py");
    let mut collector = spawn(
        "rotel",
        &tools().join("bin/rotel-agent"),
        &[
            "start",
            "--otlp-grpc-endpoint",
            &otlp.to_string(),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{}", free_port()),
            "--exporter",
            "blackhole",
            "--otlp-with-trace-processor",
            &recorder.display().to_string(),
            "--pid-file",
            &dir.join("rotel.pid").display().to_string(),
            "--log-file",
            &dir.join("rotel-agent.log").display().to_string(),
        ],
        &collector_env,
        &dir,
    );
    eventually("the collector listening", WAIT, EVERY, || async {
        tokio::net::TcpStream::connect(otlp).await.map(drop).map_err(|e| e.to_string())
    })
    .await;

    // The platform as separate processes, as deployed, sharing the local
    // config; an urgent ticket falls overdue after three seconds.
    let prefix = unique_prefix("traces");
    let webhook = WebhookReceiver::start(Behaviour::Accept).await;
    let sms = WebhookReceiver::start(Behaviour::Accept).await;
    let intake_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let env: HashMap<String, String> = [
        ("WHISTLE_CONFIG", repo_root().join("deploy/local/whistle.toml").display().to_string()),
        ("WHISTLE__KAFKA__BROKERS", infra().brokers.clone()),
        ("WHISTLE__KAFKA__TOPIC_PREFIX", prefix.clone()),
        ("WHISTLE__KAFKA__GROUP_PREFIX", prefix.clone()),
        ("WHISTLE__REDIS__URL", infra().redis_url.clone()),
        ("WHISTLE__REDIS__KEY_PREFIX", prefix.clone()),
        ("WHISTLE__TELEMETRY__OTLP_ENDPOINT", format!("http://{otlp}")),
        ("WHISTLE__POLICY__URGENT", "3s".to_owned()),
        ("WHISTLE__INTAKE__LISTEN", intake_addr.to_string()),
        ("WHISTLE__INTAKE__HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("WHISTLE__DISPATCHER__LISTEN", "127.0.0.1:0".to_owned()),
        ("WHISTLE__CLASSIFIER__LISTEN", "127.0.0.1:0".to_owned()),
        ("WHISTLE__REVISIT__LISTEN", "127.0.0.1:0".to_owned()),
        ("WHISTLE__REVISIT__HTTP_LISTEN", "127.0.0.1:0".to_owned()),
        ("WHISTLE__NOTIFIER__WEBHOOK_URL", webhook.url()),
        ("WHISTLE__NOTIFIER__SMS__URL", sms.url()),
        ("WHISTLE__NOTIFIER__SMTP__PORT", infra().smtp.rsplit(':').next().expect("smtp port").to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(
        ["INTAKE", "CLASSIFIER", "DISPATCHER", "SLA_TIMER", "NOTIFIER", "REVISIT"]
            .map(|s| (format!("WHISTLE__{s}__OPS_LISTEN"), "127.0.0.1:0".to_owned())),
    )
    .collect();
    let mut services: Vec<Process> = [
        ("intake", "whistle-intake", &[][..]),
        ("classifier", "whistle-classifier", &[]),
        ("dispatcher", "whistle-dispatcher", &["--platform", "city"]),
        ("sla-timer", "whistle-sla-timer", &[]),
        ("notifier", "whistle-notifier", &[]),
    ]
    .iter()
    .map(|(name, bin, args)| spawn(name, &binary(bin), args, &env, &dir))
    .collect();

    let mut intake = eventually("intake answering gRPC", WAIT, EVERY, || async {
        whistle_proto::v1::intake_client::IntakeClient::connect(format!("http://{intake_addr}")).await.map_err(|e| e.to_string())
    })
    .await;
    // Every consumer in its group before the request goes in (they start at
    // the topic's beginning anyway; this only keeps the wait short).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for s in services.iter_mut() {
        assert!(s.running(), "{} exited; see {}", s.name, dir.join(format!("{}.log", s.name)).display());
    }
    let mut req = whistle_tests::request("楼道里有很浓的煤气味，邻居家没人开门", "东城区景山街道3号楼");
    req.citizen_phone = PHONE.into();
    req.citizen_name = NAME.into();
    let answer = intake.submit_request(req).await.expect("submit").into_inner();
    let overdue = webhook.wait_for(1, WAIT, is("overdue_reminder", &answer.ticket_number)).await;
    assert_eq!(overdue.len(), 1);

    // Stopped: each flushes what it has not exported yet.
    for s in services.iter_mut() {
        s.stop();
    }
    let ticket = answer.ticket_id.clone();
    let want: BTreeSet<(&str, &str)> =
        [("classifier", "received"), ("dispatcher", "classified"), ("sla-timer", "dispatched"), ("notifier", "overdue")].into();
    let all = eventually("the collector holds the ticket's spans from every service", WAIT, EVERY, || {
        let (file, ticket, want) = (spans_file.clone(), ticket.clone(), want.clone());
        async move {
            let all = spans(&file);
            let seen: BTreeSet<(String, String)> = all
                .iter()
                .filter(|s| s["attributes"]["ticket"] == ticket.as_str())
                .map(|s| (s["service"].as_str().unwrap_or("").to_owned(), s["attributes"]["event"].as_str().unwrap_or("").to_owned()))
                .collect();
            let missing: Vec<_> = want.iter().filter(|(svc, ev)| !seen.contains(&((*svc).to_owned(), (*ev).to_owned()))).collect();
            if missing.is_empty() { Ok(all) } else { Err(format!("missing {missing:?}; seen {seen:?}")) }
        }
    })
    .await;
    collector.stop();

    let of_ticket: Vec<&Value> = all.iter().filter(|s| s["attributes"]["ticket"] == ticket.as_str()).collect();
    let traces: BTreeSet<&str> = of_ticket.iter().filter_map(|s| s["trace_id"].as_str()).collect();
    assert_eq!(traces.len(), 1, "one trace for the ticket, got {traces:?}");
    let trace = *traces.iter().next().expect("a trace");
    let in_trace: Vec<&Value> = all.iter().filter(|s| s["trace_id"] == trace).collect();
    let services_seen: BTreeSet<&str> = in_trace.iter().filter_map(|s| s["service"].as_str()).collect();
    for svc in ["intake", "classifier", "dispatcher", "sla-timer", "notifier"] {
        assert!(services_seen.contains(svc), "{svc} in the trace: {services_seen:?}");
    }
    // It starts at the phone agent's call to intake.
    let root: Vec<&&Value> = in_trace.iter().filter(|s| s["parent_span_id"] == "").collect();
    assert_eq!(root.len(), 1, "one root: {root:?}");
    assert_eq!((root[0]["service"].as_str(), root[0]["name"].as_str()), (Some("intake"), Some("grpc")), "{}", root[0]);
    // The timer that fired is in it too.
    assert!(in_trace.iter().any(|s| s["service"] == "sla-timer" && s["name"] == "fire"), "the firing span");

    let recorded = std::fs::read_to_string(&spans_file).expect("spans");
    for secret in [PHONE, NAME] {
        assert!(!recorded.contains(secret), "a span holds {secret}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
