//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use tocsin::labels::{Labels, MatchOp, Matcher};
use tocsin::store::{Store, StoreOptions};

/// A loopback address nothing listens on (bound, then released): a port for a daemon or server
/// the test starts, or a receiver that is down.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A bound on a polling loop: `tick` waits one poll interval, or panics once `within` has
/// passed since the deadline was made (a bound, not a timing assertion).
pub struct Deadline {
    start: std::time::Instant,
    what: String,
    within: std::time::Duration,
    poll: std::time::Duration,
}

impl Deadline {
    pub fn new(
        what: impl Into<String>,
        within: std::time::Duration,
        poll: std::time::Duration,
    ) -> Deadline {
        Deadline {
            start: std::time::Instant::now(),
            what: what.into(),
            within,
            poll,
        }
    }

    pub async fn tick(&self) {
        assert!(
            self.start.elapsed() < self.within,
            "{}: not within {:?}",
            self.what,
            self.within
        );
        tokio::time::sleep(self.poll).await;
    }
}

/// `../shared` beside the project, if present (CI always has it).
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

pub fn name_is(name: &str) -> Vec<Matcher> {
    vec![Matcher::equal("__name__", name)]
}

pub fn matcher(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

pub fn open_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap()
}

pub fn open_store_with(dir: &tempfile::TempDir, opts: StoreOptions) -> Store {
    Store::open(&dir.path().join("tocsin.db"), opts).unwrap()
}

/// All samples of the one series matching `matchers` in [mint, maxt].
pub fn samples_of(store: &Store, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    let mut got = store.select(matchers, mint, maxt).unwrap();
    assert!(got.len() <= 1, "expected one series, got {}", got.len());
    got.pop().map(|s| s.samples).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// a scripted SMTP server (plain SMTP on 127.0.0.1: TLS would need certificates)

/// What the scripted SMTP server does differently from a server that accepts everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Script {
    /// the reply to AUTH (default `235` accepted)
    pub auth_reply: Option<&'static str>,
    /// the reply to MAIL FROM (default `250`)
    pub mail_reply: Option<&'static str>,
    /// close the connection after the first line of message data
    pub drop_in_data: bool,
}

/// One accepted message.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub auth: Option<String>,
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on 127.0.0.1 (one task per connection) recording accepted messages.
/// It offers 8BITMIME and AUTH PLAIN, never STARTTLS.
pub async fn smtp_server(script: Script) -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let sink = mails.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(smtp_session(socket, script, sink.clone()));
        }
    });
    (addr, mails)
}

async fn smtp_session(
    socket: tokio::net::TcpStream,
    script: Script,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 test.local ESMTP\r\n").await?;
    let mut mail = Mail::default();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-test.local\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 10000000".into()
        } else if upper.starts_with("AUTH") {
            mail.auth = Some(line.clone());
            script.auth_reply.unwrap_or("235 2.7.0 accepted").into()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_string();
            script.mail_reply.unwrap_or("250 2.1.0 ok").into()
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpt.push(line[8..].trim().to_string());
            "250 2.1.5 ok".into()
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            while let Some(l) = lines.next_line().await? {
                if script.drop_in_data {
                    // hang up with the message half sent
                    return Ok(());
                }
                if l == "." {
                    break;
                }
                data.push_str(&l);
                data.push('\n');
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 queued".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok".into()
        } else {
            "502 5.5.2 not implemented".into()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}
