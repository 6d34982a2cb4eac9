//! The platform as it is deployed: every service its own process (the
//! release binaries), one dispatcher per platform, all reading one config
//! file written for the run (its own topic, group and key prefixes, its own
//! ports, the run's receivers for webhooks and SMS).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use whistle_tests::{free_port, repo_root};

/// One running service, and how to start it again.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Its ops endpoint (`/metrics`, `/readyz`).
    pub ops: String,
    log: PathBuf,
    exe: PathBuf,
    args: Vec<String>,
    vars: Vec<(String, String)>,
}

/// Starts `exe` in the repository, its output appended to `log`.
fn launch(exe: &Path, args: &[String], vars: &[(String, String)], log: &Path) -> Result<Child> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(exe)
        .args(args)
        .envs(vars.iter().cloned())
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {} (built by `cargo build --release --bins`)", exe.display()))
}

/// Every process of the run; killed when dropped.
pub struct Processes {
    pub procs: Vec<Proc>,
    /// Each dispatcher's desk (gRPC), by platform.
    pub desks: std::collections::HashMap<String, String>,
    pub intake: String,
    /// Every intake replica's gRPC address.
    pub intakes: Vec<String>,
    pub revisit: String,
    /// Consumer groups on the events topic (prefixed), by service.
    pub groups: Vec<(String, String)>,
}

/// The token each caller of the run holds.
pub fn token(caller: &str) -> String {
    format!("load-token-{caller}")
}

fn entries(callers: &[String]) -> toml::Value {
    toml::Value::Array(
        callers
            .iter()
            .map(|c| {
                let mut t = toml::Table::new();
                t.insert("caller".into(), c.clone().into());
                t.insert("sha256".into(), whistle_runtime::auth::hash_token(&token(c)).into());
                toml::Value::Table(t)
            })
            .collect(),
    )
}

fn set(config: &mut toml::Table, path: &str, value: impl Into<toml::Value>) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("a key");
    let mut t = config;
    for p in parts {
        t = t.entry(p).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().expect("a table");
    }
    t.insert(last.into(), value.into());
}

/// A free loopback address, never one this run handed out before (a port
/// is free only until its process binds it, and the run starts many).
fn loopback() -> String {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = free_port();
        if !given.contains(&port) {
            given.push(port);
            return format!("127.0.0.1:{port}");
        }
    }
}

/// What the run's config needs from outside.
pub struct Setup<'a> {
    pub prefix: &'a str,
    pub brokers: &'a str,
    pub redis_url: &'a str,
    pub webhook_url: String,
    pub sms_url: String,
    /// Dispatchers besides the city's.
    pub platforms: &'a [String],
    pub dir: &'a Path,
    /// Processes of every service (the second and later named `name#2`…).
    pub replicas: usize,
}

impl Processes {
    pub fn start(s: &Setup<'_>) -> Result<Processes> {
        let root = repo_root();
        let bin = root.join("target/release");
        let mut config: toml::Table = std::fs::read_to_string(root.join("deploy/local/whistle.toml"))?.parse()?;
        let city_file = root.join("deploy/config/demo-city.toml");
        let city = whistle_runtime::config::CitySettings { file: city_file.clone(), ..Default::default() }.load()?;
        let mut desk_callers: Vec<String> = vec!["city".into(), "agent:load".into()];
        desk_callers.extend(s.platforms.iter().cloned());
        desk_callers.extend(city.config.units.iter().map(|u| format!("unit:{}", u.code)));
        set(&mut config, "kafka.brokers", s.brokers);
        set(&mut config, "kafka.topic_prefix", s.prefix);
        set(&mut config, "kafka.group_prefix", s.prefix);
        set(&mut config, "kafka.create_topics", true);
        set(&mut config, "redis.url", s.redis_url);
        set(&mut config, "redis.key_prefix", s.prefix);
        set(&mut config, "city.file", city_file.display().to_string());
        set(&mut config, "classifier.model", root.join("services/classifier/model/whistle.model").display().to_string());
        let intake = loopback();
        let revisit = loopback();
        let desk = loopback();
        let revisit_http = loopback();
        let intake_http = loopback();
        set(&mut config, "intake.listen", intake.clone());
        set(&mut config, "intake.http_listen", intake_http.clone());
        set(&mut config, "intake.tokens", entries(&["agent:load".into(), "city".into()]));
        set(&mut config, "open311.public_url", format!("http://{intake_http}"));
        set(&mut config, "classifier.listen", loopback());
        set(&mut config, "dispatcher.listen", desk.clone());
        set(&mut config, "dispatcher.tokens", entries(&desk_callers));
        set(&mut config, "notifier.webhook_url", s.webhook_url.clone());
        set(&mut config, "notifier.sms.url", s.sms_url.clone());
        set(&mut config, "notifier.sms.body_template", whistle_tests::SMS_BODY);
        // The gateways' rate limits (shipped: 50 SMS, 20 emails and 200
        // webhooks a second) are the city's gateways', not the pipeline's.
        set(&mut config, "notifier.sms.per_second", 1_000_000.0);
        set(&mut config, "notifier.smtp.per_second", 1_000_000.0);
        set(&mut config, "notifier.webhook_per_second", 1_000_000.0);
        set(&mut config, "notifier.summary.enabled", false);
        set(&mut config, "revisit.listen", revisit.clone());
        set(&mut config, "revisit.http_listen", revisit_http.clone());
        set(&mut config, "revisit.public_url", format!("http://{revisit_http}"));
        set(&mut config, "revisit.tokens", entries(&["agent:load".into(), "city".into()]));
        config.remove("console");
        let file = s.dir.join("whistle.toml");
        std::fs::write(&file, toml::to_string(&config)?)?;

        let mut me = Processes {
            procs: Vec::new(),
            desks: [("city".to_owned(), format!("http://{desk}"))].into(),
            intake: format!("http://{intake}"),
            intakes: vec![format!("http://{intake}")],
            revisit: format!("http://{revisit}"),
            groups: Vec::new(),
        };
        let mut desks = Vec::new();
        // The first replica listens where the config says; each further
        // one on ports of its own (`listens`: the settings it serves on).
        let mut spawn = |name: &str,
                         exe: &str,
                         args: &[&str],
                         section: &str,
                         listens: &[&str],
                         first: Vec<(String, String)>,
                         group: &str|
         -> Result<Vec<String>> {
            let mut addrs = Vec::new();
            for r in 0..s.replicas.max(1) {
                let name = if r == 0 { name.to_owned() } else { format!("{name}#{}", r + 1) };
                let ops = loopback();
                let mut vars =
                    vec![(format!("WHISTLE__{section}__OPS_LISTEN"), ops.clone()), ("WHISTLE_CONFIG".into(), file.display().to_string())];
                if r == 0 {
                    vars.extend(first.iter().cloned());
                } else {
                    for l in listens {
                        let addr = loopback();
                        if *l == "LISTEN" {
                            addrs.push(format!("http://{addr}"));
                        }
                        vars.push((format!("WHISTLE__{section}__{l}"), addr));
                    }
                }
                let log = s.dir.join(format!("{}.log", name.replace([':', '#'], "-")));
                let _ = std::fs::remove_file(&log);
                let (exe, args) = (bin.join(exe), args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
                let child = launch(&exe, &args, &vars, &log)?;
                me.procs.push(Proc { name: name.clone(), child, ops, log, exe, args, vars });
                me.groups.push((name, format!("{}{group}", s.prefix)));
            }
            Ok(addrs)
        };
        let more = spawn("intake", "whistle-intake", &[], "INTAKE", &["LISTEN", "HTTP_LISTEN"], Vec::new(), "intake-projector")?;
        spawn("classifier", "whistle-classifier", &[], "CLASSIFIER", &["LISTEN"], Vec::new(), "classifier")?;
        spawn("dispatcher:city", "whistle-dispatcher", &["--platform", "city"], "DISPATCHER", &["LISTEN"], Vec::new(), "dispatcher-city")?;
        for p in s.platforms {
            let listen = loopback();
            desks.push((p.clone(), format!("http://{listen}")));
            spawn(
                &format!("dispatcher:{p}"),
                "whistle-dispatcher",
                &["--platform", p],
                "DISPATCHER",
                &["LISTEN"],
                vec![("WHISTLE__DISPATCHER__LISTEN".into(), listen)],
                &format!("dispatcher-{}", p.replace(':', "-")),
            )?;
        }
        spawn("sla-timer", "whistle-sla-timer", &[], "SLA_TIMER", &[], Vec::new(), "sla-timer")?;
        spawn("notifier", "whistle-notifier", &[], "NOTIFIER", &[], Vec::new(), "notifier")?;
        spawn("revisit", "whistle-revisit", &[], "REVISIT", &["LISTEN", "HTTP_LISTEN"], Vec::new(), "revisit")?;
        me.intakes.extend(more);
        me.desks.extend(desks);
        Ok(me)
    }

    /// Kills process `i` at once (SIGKILL: no shutdown of any kind).
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        let p = &mut self.procs[i];
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    /// Starts process `i` again as it was first started.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let p = &mut self.procs[i];
        p.child = launch(&p.exe, &p.args, &p.vars, &p.log)?;
        Ok(())
    }

    /// Waits until every process answers `/readyz`; fails naming the one
    /// that did not (or exited), with the end of its log.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let until = Instant::now() + within;
        for i in 0..self.procs.len() {
            loop {
                self.check_alive()?;
                let p = &self.procs[i];
                if let Ok(r) = http.get(format!("http://{}/readyz", p.ops)).send().await
                    && r.status().is_success()
                {
                    break;
                }
                if Instant::now() > until {
                    bail!("{} not ready after {within:?}; its log ({}) ends:\n{}", p.name, p.log.display(), tail(&p.log));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Fails naming a process that has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status}); its log ({}) ends:\n{}", p.name, p.log.display(), tail(&p.log));
            }
        }
        Ok(())
    }

    /// Each process's pid, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs.iter().map(|p| (p.name.clone(), p.child.id())).collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// CPU time (user + system) and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub rss_kib: u64,
}

pub fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime, in clock ticks of 1/100 s (Linux's USER_HZ).
    let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Usage { cpu, rss_kib }
}

/// The broker's and Redis's pids, from the pidfiles `deploy/local/infra.sh` writes.
pub fn infra_pids() -> Vec<(String, u32)> {
    let data = std::env::var_os("WHISTLE_DATA").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".local"));
    ["tansu", "nisshi", "redis", "smtp"]
        .iter()
        .filter_map(|n| {
            let pid = std::fs::read_to_string(data.join(format!("{n}.pid"))).ok()?.trim().parse().ok()?;
            Some((format!("{n} (infra)"), pid))
        })
        .collect()
}
