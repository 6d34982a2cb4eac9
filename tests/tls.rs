//! The production connections that can be started on loopback, each over
//! TLS with a certificate from the test's own CA: Redis (`rediss://` with a
//! password and with an ACL user), SMTP with STARTTLS and with implicit TLS,
//! and an HTTPS webhook. Each works when the CA is given (`ca_file`) and is
//! refused, saying why, when it is not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use whistle_notifier::channels::{Smtp, SmtpSettings, Webhook};
use whistle_notifier::{Message, SmtpTls, Trust};
use whistle_runtime::{RedisConfig, Secret};
use whistle_tests::wait::eventually;
use whistle_tests::{free_port, tools};
use whistle_tests::{repo_root, unique_prefix};

const WAIT: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_millis(100);

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate it signed for localhost and 127.0.0.1.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(unique_prefix(name));
        std::fs::create_dir_all(&dir).expect("dir");
        let ssl = |args: &[&str]| run(Command::new("openssl").current_dir(&dir).args(args));
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=whistle test CA",
        ]);
        ssl(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        std::fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("san");
        ssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
        Certs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Server {
    let child = Command::new(&program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: {e}", program.as_ref()));
    Server(child)
}

async fn listening(port: u16) {
    eventually(&format!("a server on port {port}"), WAIT, EVERY, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(drop).map_err(|e| e.to_string())
    })
    .await;
}

#[tokio::test]
async fn redis_over_tls_with_a_password_or_an_acl_user() {
    let certs = Certs::new("tls-redis");
    let port = free_port();
    let tls_port = port.to_string();
    let _redis = start(
        "redis-server",
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &certs.path("server.pem"),
            "--tls-key-file",
            &certs.path("server.key"),
            "--tls-ca-cert-file",
            &certs.path("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "default-s3cret",
            "--user",
            "whistle",
            "on",
            ">whistle-s3cret",
            "~*",
            "&*",
            "+@all",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    listening(port).await;
    let config = |url: &str, ca: bool| RedisConfig {
        url: Secret::new(url.to_owned()),
        ca_file: ca.then(|| certs.dir.join("ca.pem")),
        key_prefix: unique_prefix("tls"),
        ..RedisConfig::default()
    };
    for url in [format!("rediss://:default-s3cret@localhost:{port}/0"), format!("rediss://whistle:whistle-s3cret@127.0.0.1:{port}/0")] {
        let store = whistle_runtime::TicketStore::connect(&config(&url, true)).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let mut conn = store.redis();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.expect("ping");
        assert_eq!(pong, "PONG");
        assert!(!store.alive().await.expect("a read over TLS"), "nothing stored under a new prefix");
    }
    // Without the CA the server's certificate is not trusted; with a wrong
    // password it refuses; a CA for a plain URL is a configuration mistake.
    let untrusted = whistle_runtime::TicketStore::connect(&config(&format!("rediss://:default-s3cret@localhost:{port}/0"), false)).await;
    let Err(e) = untrusted else { panic!("connected without trusting the CA") };
    let e = e.to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let wrong = whistle_runtime::TicketStore::connect(&config(&format!("rediss://whistle:wrong@localhost:{port}/0"), true)).await;
    let Err(e) = wrong else { panic!("connected with a wrong password") };
    let e = e.to_string();
    assert!(e.contains("WRONGPASS") || e.to_lowercase().contains("password"), "{e}");
    let plain = whistle_runtime::TicketStore::connect(&config(&format!("redis://localhost:{port}/0"), true)).await;
    let Err(e) = plain else { panic!("a CA for a plain URL was accepted") };
    assert!(e.to_string().contains("not a rediss://"), "{e}");
}

fn mails(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn smtp_with_starttls_and_with_implicit_tls() {
    let certs = Certs::new("tls-smtp");
    let python = tools().join("venv/bin/python");
    let trust = Trust::load(Some(&certs.dir.join("ca.pem"))).expect("the CA");
    for (tls, implicit) in [(SmtpTls::Starttls, false), (SmtpTls::Tls, true)] {
        let port = free_port();
        let maildir = certs.dir.join(format!("mail-{port}"));
        let mut args = vec![
            "deploy/local/smtp_sink.py".to_owned(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            maildir.display().to_string(),
            "--tls-cert".into(),
            certs.path("server.pem"),
            "--tls-key".into(),
            certs.path("server.key"),
        ];
        if implicit {
            args.push("--implicit-tls".into());
        }
        let _smtp = start(&python, &args.iter().map(String::as_str).collect::<Vec<_>>());
        listening(port).await;
        let settings = SmtpSettings { host: "localhost".into(), port, tls, ..SmtpSettings::default() };
        let smtp = Smtp::new(&settings, Duration::from_secs(10), &trust).expect("config").expect("configured");
        let mut m = Message::probe();
        m.text = format!("over {tls:?}");
        smtp.send("unit-head@example.gov.cn", &m).await.unwrap_or_else(|e| panic!("{tls:?}: {e:?}"));
        let got = eventually("the mail in the sink", WAIT, EVERY, || {
            let maildir = maildir.clone();
            async move {
                let got = mails(&maildir);
                if got.is_empty() { Err("no mail") } else { Ok(got) }
            }
        })
        .await;
        assert!(got[0].contains("unit-head@example.gov.cn"), "{}", got[0]);

        // Not trusting the CA, the notifier does not send; nor in clear to
        // a server that requires STARTTLS.
        let untrusted = Smtp::new(&settings, Duration::from_secs(10), &Trust::default()).expect("config").expect("configured");
        let e = untrusted.send("unit-head@example.gov.cn", &m).await.expect_err("an untrusted certificate");
        assert!(format!("{e:?}").to_lowercase().contains("certificate"), "{e:?}");
        if !implicit {
            let plain = SmtpSettings { tls: SmtpTls::None, ..settings.clone() };
            let plain = Smtp::new(&plain, Duration::from_secs(10), &trust).expect("config").expect("configured");
            let e = plain.send("unit-head@example.gov.cn", &m).await.expect_err("STARTTLS required");
            assert!(format!("{e:?}").contains("STARTTLS"), "{e:?}");
        }
    }
}

#[tokio::test]
async fn webhooks_over_https() {
    let certs = Certs::new("tls-https");
    let port = free_port();
    let _sink = start(
        "python3",
        &[
            "deploy/local/webhook_sink.py",
            "--port",
            &port.to_string(),
            "--tls-cert",
            &certs.path("server.pem"),
            "--tls-key",
            &certs.path("server.key"),
        ],
    );
    listening(port).await;
    let url = format!("https://localhost:{port}/messages");
    let trust = Trust::load(Some(&certs.dir.join("ca.pem"))).expect("the CA");
    let webhook = Webhook::new(Duration::from_secs(10), 100.0, &trust).expect("client");
    webhook.send(&url, &Message::probe()).await.unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let untrusted = Webhook::new(Duration::from_secs(10), 100.0, &Trust::default()).expect("client");
    let e = untrusted.send(&url, &Message::probe()).await.expect_err("an untrusted certificate");
    assert!(format!("{e:?}").to_lowercase().contains("certificate"), "{e:?}");
    let bad = std::fs::write(certs.dir.join("bad.pem"), "not a certificate");
    bad.expect("write");
    let e = Trust::load(Some(&certs.dir.join("bad.pem"))).expect_err("not a certificate").to_string();
    assert!(e.contains("notifier.ca_file"), "{e}");
}
