//! A throwaway PostgreSQL server for tests: one cluster per test process, in a temporary
//! directory, listening on a free loopback port, with a fresh database per test (collated
//! by ICU's English where the server has ICU, so byte order is never there by accident).
//!
//! With `STEPWISE_TEST_POSTGRES` set (`postgres://user@host:port`, a server that lets that
//! user create databases) the tests use that server instead. Otherwise the cluster is made
//! with the server's own `initdb` and `pg_ctl`, found on the `PATH` or under Debian's
//! `/usr/lib/postgresql/<version>/bin`; without them the tests fail and say what to install
//! (they never pass without a server). Run as root, the server runs as the `postgres` user
//! (PostgreSQL refuses root), through `runuser`.
//!
//! The cluster outlives no test process: a watchdog shell, started before it in a session
//! of its own, stops it and removes its directory once the process that made it has exited.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming a server to use instead of a throwaway one.
pub const SERVER_ENV: &str = "STEPWISE_TEST_POSTGRES";

/// A running server: the base URL databases are made under.
#[derive(Debug)]
pub struct Server {
    base: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The test process's server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var(SERVER_ENV) {
        Ok(base) => Server {
            base: base.trim_end_matches('/').to_owned(),
        },
        Err(_) => start(),
    })
}

impl Server {
    /// The URL of a new, empty database on the server.
    pub async fn fresh_database(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        // Unique on a long-lived server too, where another run may have had this pid.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("stepwise_test_{}_{stamp}_{n}", std::process::id());
        let url = format!("{}/postgres", self.base);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                let named = url
                    .parse::<tokio_postgres::Config>()
                    .map(|c| crate::describe(&c))
                    .unwrap_or_else(|_| "the test server".into());
                panic!("connect to {named}: {e}")
            });
        let task = tokio::spawn(connection);
        // A collation that does not sort by bytes (ICU's English, needing no OS locale), so
        // a query that forgets the backend's byte order shows in the tests.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        );
        if client.batch_execute(&icu).await.is_err() {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        }
        drop(client);
        let _ = task.await;
        format!("{}/{name}", self.base)
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    if let Some(dir) = on_path {
        return dir;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|dir| dir.join("initdb").is_file())
        .collect();
    // The newest version: directories are named by major version.
    debian.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    debian.pop().unwrap_or_else(|| {
        panic!(
            "the PostgreSQL tests need a server: install PostgreSQL (Debian: apt-get install \
             postgresql; .ci/run does) or set {SERVER_ENV} to a server's URL"
        )
    })
}

/// Whether this process runs as root (PostgreSQL will not).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` from `bin`, as the `postgres` user when this process is root.
fn command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Attempts at starting the cluster: its port is taken free and then given to the server,
/// and another process may take it in between.
const START_ATTEMPTS: usize = 3;

/// Makes and starts a cluster; see the module docs.
fn start() -> Server {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("stepwise-pg-")
        .tempdir()
        .expect("a temporary directory for the cluster")
        .keep();
    let data = dir.join("data");
    // The watchdog first, so whatever happens next the directory (and a server, if one
    // starts) goes when this process does. In its own session: a signal to this process's
    // group (a timeout killing the test run) does not take it along.
    let stop = command(&bin, "pg_ctl");
    let mut watchdog = Command::new("setsid");
    watchdog
        .args([
            "sh",
            "-c",
            "( while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
               shift; data=\"$1\"; dir=\"$2\"; shift 2; \
               [ -d \"$data\" ] && \"$@\" -D \"$data\" -m immediate stop; \
               rm -rf \"$dir\" ) >/dev/null 2>&1 </dev/null &",
            "watchdog",
        ])
        .arg(std::process::id().to_string())
        .arg(&data)
        .arg(&dir)
        .arg(stop.get_program())
        .args(stop.get_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let detached = watchdog.status().expect("start the cluster's watchdog");
    assert!(detached.success(), "the cluster's watchdog did not start");
    if is_root() {
        let mut chown = Command::new("chown");
        chown.arg("postgres:").arg(&dir);
        run(chown, "chown the cluster's directory to postgres");
    }
    let mut initdb = command(&bin, "initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "stepwise", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    run(initdb, "initdb");
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Tests do not need their commits on disk: fsync off makes the server fast. The
        // socket directory is the cluster's own (pg_ctl hands these options to a shell).
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            dir.display()
        );
        let out = command(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-w", "-l"])
            .arg(dir.join("server.log"))
            .arg("start")
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            return Server {
                base: format!("postgres://stepwise@127.0.0.1:{port}"),
            };
        }
        failures.push(format!(
            "port {port}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    panic!(
        "the test PostgreSQL cluster did not start ({} in {}):\n{}",
        "server.log",
        dir.display(),
        failures.join("\n")
    );
}
