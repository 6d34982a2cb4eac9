//! The Helm chart, as `helm` renders it: with the default values and with a
//! production-like values file it passes `helm lint --strict` and validates
//! against the Kubernetes API schemas (kubernetes-validate, strict); every
//! deployment has its probes, resources, a non-root read-only security
//! context, a disruption budget and its secrets from the existing Secret;
//! scaling on lag never asks for more replicas than partitions; wrong
//! values are refused, saying which.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use whistle_tests::tools;

/// Which Kubernetes version the chart targets.
const KUBERNETES: &str = "1.35.0";

fn tool(path: &str) -> PathBuf {
    let p = tools().join(path);
    assert!(p.exists(), "{} is missing: deploy/local/install.sh installs it (make test runs it)", p.display());
    p
}

/// A helm command on the chart, with the demo city and these values: what
/// it printed, or what it said when it failed.
fn helm(command: &[&str], values: &[&str]) -> Result<String, String> {
    let out = Command::new(tool("bin/helm"))
        .current_dir(whistle_tests::repo_root())
        .args(command)
        .args(["helm/whistle", "--set-file", "city.file=deploy/config/demo-city.toml"])
        .args(values)
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// `helm template` with these values: the manifests, or helm's error.
fn render(values: &[&str]) -> Result<String, String> {
    helm(&["template", "whistle"], values)
}

/// Runs a tool with `input` on stdin: (success, stdout and stderr).
fn pipe(program: PathBuf, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The manifests as JSON values (PyYAML, which the validator brings along).
fn documents(yaml: &str) -> Vec<Value> {
    let (ok, out) = pipe(
        tool("venv/bin/python"),
        &["-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"],
        yaml,
    );
    assert!(ok, "the rendered chart is not YAML: {out}");
    serde_json::from_str(&out).expect("json")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().expect("a name")
}

/// Lint, render, validate, and check what every deployment must have.
fn check(values: &[&str]) -> Vec<Value> {
    if let Err(e) = helm(&["lint", "--strict"], values) {
        panic!("helm lint {values:?}: {e}");
    }
    let yaml = render(values).unwrap_or_else(|e| panic!("helm template {values:?}: {e}"));
    let (ok, said) = pipe(tool("venv/bin/kubernetes-validate"), &["--strict", "--quiet", "-k", KUBERNETES, "-"], &yaml);
    assert!(ok, "the manifests of {values:?} do not validate against Kubernetes {KUBERNETES}: {said}");
    assert!(!said.contains("ERROR"), "{said}");
    let docs = documents(&yaml);
    let deployments = of_kind(&docs, "Deployment");
    assert!(deployments.len() >= 8, "every service and a dispatcher per platform: {}", deployments.len());
    let budgets = of_kind(&docs, "PodDisruptionBudget");
    for d in &deployments {
        let n = name(d);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{n}");
        let containers = pod["containers"].as_array().expect("containers");
        for c in containers {
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{n}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{n}");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics", "{n}");
            assert!(c["ports"].as_array().expect("ports").iter().any(|p| p["name"] == "metrics" && p["containerPort"] == 9090), "{n}");
            assert!(
                c["resources"]["limits"]["memory"].is_string() && c["resources"]["requests"]["cpu"].is_string(),
                "{n}: {}",
                c["resources"]
            );
            let sc = &c["securityContext"];
            assert_eq!(
                (sc["readOnlyRootFilesystem"].as_bool(), sc["allowPrivilegeEscalation"].as_bool()),
                (Some(true), Some(false)),
                "{n}"
            );
            assert!(
                c["envFrom"].as_array().expect("envFrom").iter().any(|e| e["secretRef"]["name"].is_string()),
                "{n}: secrets from the Secret"
            );
            let env = c["env"].as_array().expect("env");
            assert!(
                env.iter().any(|e| e["name"].as_str().is_some_and(|k| k.ends_with("__OPS_LISTEN")) && e["value"] == "0.0.0.0:9090"),
                "{n}"
            );
            // Read by the service as an integer: Helm must not write 1e+06.
            let ready = env.iter().find(|e| e["name"] == "WHISTLE__KAFKA__READY_MAX_LAG").unwrap_or_else(|| panic!("{n}: ready_max_lag"));
            let lag = ready["value"].as_str().and_then(|v| v.parse::<i64>().ok()).unwrap_or_else(|| panic!("{n}: {ready}"));
            assert_eq!(lag, if n == "whistle-intake" { 1_000_000 } else { 1000 }, "{n}: intake keeps taking requests while it catches up");
        }
        let selector = &d["spec"]["selector"]["matchLabels"];
        assert!(budgets.iter().any(|b| &b["spec"]["selector"]["matchLabels"] == selector), "{n} has a PodDisruptionBudget");
    }
    assert_eq!(of_kind(&docs, "NetworkPolicy").len(), 1);
    // The config the chart mounts is one every service accepts (no unknown
    // section or key, values in range).
    let config = of_kind(&docs, "ConfigMap").into_iter().find(|c| name(c) == "whistle-config").expect("the config");
    let file = std::env::temp_dir().join(format!("{}.toml", whistle_tests::unique_prefix("chart-config")));
    std::fs::write(&file, config["data"]["whistle.toml"].as_str().expect("whistle.toml")).expect("write");
    use whistle_runtime::config::load_service;
    let loaded = [
        load_service::<whistle_intake::Config>(Some(&file)).err(),
        load_service::<whistle_classifier::Config>(Some(&file)).err(),
        load_service::<whistle_dispatcher::Config>(Some(&file)).err(),
        load_service::<whistle_sla_timer::Config>(Some(&file)).err(),
        load_service::<whistle_notifier::Config>(Some(&file)).err(),
        load_service::<whistle_revisit::Config>(Some(&file)).err(),
        load_service::<whistle_console::Config>(Some(&file)).err(),
    ];
    let _ = std::fs::remove_file(&file);
    let refused: Vec<String> = loaded.into_iter().flatten().map(|e| e.to_string()).collect();
    assert!(refused.is_empty(), "the chart's config for {values:?} is refused: {refused:?}");
    docs
}

#[test]
fn the_chart_renders_and_validates_with_the_default_values() {
    let docs = check(&[]);
    assert!(of_kind(&docs, "ScaledObject").is_empty(), "scaling on lag is off by default");
    for d in of_kind(&docs, "Deployment") {
        assert!(d["spec"]["replicas"].as_i64().is_some_and(|r| r >= 1), "{}", name(d));
        let envs = d["spec"]["template"]["spec"]["containers"][0]["envFrom"].to_string();
        assert!(envs.contains("whistle-secrets"), "{envs}");
    }
}

#[test]
fn the_chart_renders_and_validates_with_production_values_and_scales_on_lag() {
    let docs = check(&["-f", "helm/whistle/values-production.yaml"]);
    let deployments = of_kind(&docs, "Deployment");
    let dispatchers: Vec<&str> = deployments.iter().map(|d| name(d)).filter(|n| n.contains("dispatcher-")).collect();
    assert_eq!(dispatchers, ["whistle-dispatcher-city", "whistle-dispatcher-county-xicheng", "whistle-dispatcher-street-xc-xinjiekou"]);
    let scaled = of_kind(&docs, "ScaledObject");
    let console = deployments.iter().find(|d| name(d) == "whistle-console").expect("the console");
    assert!(console["spec"]["replicas"].as_i64().is_some_and(|r| r >= 1), "the console reads no topic: it keeps its replicas");
    assert_eq!(scaled.len(), deployments.len() - 1, "every other deployment scales on its lag");
    for s in scaled {
        let n = name(s);
        let target = s["spec"]["scaleTargetRef"]["name"].as_str().expect("target");
        let d = deployments.iter().find(|d| name(d) == target).unwrap_or_else(|| panic!("{n} scales {target}, which is not deployed"));
        assert!(d["spec"]["replicas"].is_null(), "{target}: the scaler owns the replicas");
        let max = s["spec"]["maxReplicaCount"].as_i64().expect("max");
        assert!((1..=12).contains(&max), "{n}: at most the 12 partitions, got {max}");
        for t in s["spec"]["triggers"].as_array().expect("triggers") {
            assert_eq!(t["type"], "kafka", "{n}");
            assert!(t["metadata"]["bootstrapServers"].as_str().is_some_and(|b| b.contains("kafka.example.internal")), "{n}");
            assert!(t["metadata"]["consumerGroup"].is_string() && t["metadata"]["topic"].is_string(), "{n}: {t}");
        }
    }
    let street = of_kind(&docs, "ScaledObject").into_iter().find(|s| name(s) == "whistle-dispatcher-street-xc-xinjiekou").expect("street");
    assert_eq!(street["spec"]["maxReplicaCount"], 3, "its own ceiling");
    let dispatch_group = street["spec"]["triggers"][0]["metadata"]["consumerGroup"].clone();
    assert_eq!(dispatch_group, "dispatcher-street-xc-xinjiekou", "the group the dispatcher of that platform consumes in");
    let env = console["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains(r#"\"county:xicheng\"=\"http://whistle-desk-county-xicheng:50052\""#), "the console reaches each desk: {env}");
    let timers = deployments.iter().find(|d| name(d) == "whistle-sla-timer").expect("sla-timer");
    assert!(timers["spec"]["template"]["spec"]["containers"][0]["env"].to_string().contains("WHISTLE__REDIS__CLUSTER_NODES"));
}

#[test]
fn wrong_values_are_refused_saying_which() {
    for (set, says) in [
        ("dispatchers[0].platform=Bad_Name", "platform"),
        ("kafka.brokers=no-port", "brokers"),
        ("existingSecret=", "existingSecret"),
        ("intake.replicas=-1", "replicas"),
        ("redis.url=localhost:6379", "url"),
        ("autoscaling.lagThreshold=0", "lagThreshold"),
    ] {
        let refused = render(&["--set", set]).expect_err(set);
        assert!(refused.contains(says), "--set {set}: the error names {says}: {refused}");
    }
}
