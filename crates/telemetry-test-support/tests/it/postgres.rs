//! Tests of the private PostgreSQL server against real PostgreSQL binaries. Without them these
//! tests fail (with the error saying to `apt-get install postgresql`); `cargo xtask test`
//! installs them first.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telemetry_test_support::postgres::{PgError, PgServer};

/// Set in the child process of [`the_server_ends_with_its_process`].
const CHILD_VARIABLE: &str = "TELEMETRY_TEST_PG_WATCHDOG_CHILD";

fn start() -> PgServer {
    PgServer::builder().fast().start().unwrap_or_else(|error| panic!("{error}"))
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_ok()
}

/// A query of the server's settings `names`, one column each.
fn settings_query(names: &[&str]) -> String {
    let columns: Vec<String> =
        names.iter().map(|name| format!("current_setting('{name}')")).collect();
    format!("SELECT {}", columns.join(", "))
}

/// The database name at the end of a URL.
fn database(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn databases_are_separate() {
    let server = start();
    let first = server.create_database().unwrap();
    let second = server.create_database().unwrap();
    assert_ne!(first, second);
    for url in [&first, &second] {
        assert_eq!(*url, server.url(database(url)));
        assert!(url.starts_with(&format!("postgres://postgres@127.0.0.1:{}/test_", server.port())));
    }

    server
        .psql(database(&first), "CREATE TABLE rooms (name text); INSERT INTO rooms VALUES ('a')")
        .unwrap();
    server
        .psql(
            database(&second),
            "CREATE TABLE rooms (name text); INSERT INTO rooms VALUES ('b'), ('c')",
        )
        .unwrap();
    assert_eq!(
        server.psql(database(&first), "SELECT name FROM rooms ORDER BY name").unwrap(),
        "a\n"
    );
    assert_eq!(
        server.psql(database(&second), "SELECT name FROM rooms ORDER BY name").unwrap(),
        "b\nc\n"
    );

    let settings = server
        .psql(
            database(&first),
            &settings_query(&["max_connections", "listen_addresses", "server_encoding"]),
        )
        .unwrap();
    assert_eq!(settings, "300|127.0.0.1|UTF8\n");
    assert!(server.log().contains("ready to accept connections"), "{}", server.log());
}

#[test]
fn psql_reports_sql_errors() {
    let server = PgServer::shared();
    let url = server.create_database().unwrap();
    let error = server.psql(database(&url), "SELECT * FROM missing").unwrap_err();
    assert!(matches!(error, PgError::Command { .. }), "{error:?}");
    assert!(error.to_string().contains("relation \"missing\" does not exist"), "{error}");
}

#[test]
fn durability_is_on_unless_fast() {
    let server = PgServer::shared();
    let url = server.create_database().unwrap();
    let settings = server
        .psql(database(&url), &settings_query(&["fsync", "synchronous_commit", "full_page_writes"]))
        .unwrap();
    assert_eq!(settings, "on|on|on\n");

    let fast = start();
    let settings = fast.psql("postgres", &settings_query(&["fsync", "full_page_writes"])).unwrap();
    assert_eq!(settings, "off|off\n");
}

#[test]
fn the_shared_server_is_one() {
    let first = PgServer::shared();
    let second = PgServer::shared();
    assert!(std::ptr::eq(first, second));
    let one = first.create_database().unwrap();
    let other = second.create_database().unwrap();
    assert_ne!(one, other);
}

#[test]
fn rows_survive_a_stop_and_a_kill() {
    let mut server = start();
    let port = server.port();
    let url = server.create_database().unwrap();
    let name = database(&url).to_owned();
    server.psql(&name, "CREATE TABLE events (id int); INSERT INTO events VALUES (1), (2)").unwrap();

    server.stop().unwrap();
    assert!(!server.is_running());
    assert!(!accepts_connections(port), "a stopped server refuses connections");
    assert!(server.psql(&name, "SELECT 1").is_err());
    server.stop().unwrap();

    server.restart().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.psql(&name, "SELECT count(*) FROM events").unwrap(), "2\n");

    // A committed row survives a crash: crash recovery replays it.
    server.psql(&name, "INSERT INTO events VALUES (3)").unwrap();
    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(!accepts_connections(port), "a killed server refuses connections");
    server.restart().unwrap();
    assert_eq!(server.psql(&name, "SELECT count(*) FROM events").unwrap(), "3\n");
    assert!(server.log().contains("database system was interrupted"), "{}", server.log());

    // A restart of a running server stops it first.
    server.restart().unwrap();
    assert_eq!(server.psql(&name, "SELECT count(*) FROM events").unwrap(), "3\n");
}

#[test]
fn dropping_the_server_stops_it_and_removes_its_folder() {
    let server = start();
    let port = server.port();
    let folder = server.data_dir().parent().unwrap().to_path_buf();
    assert!(folder.join("data/PG_VERSION").is_file());
    drop(server);
    assert!(!accepts_connections(port));
    assert!(!folder.exists());
}

/// Runs [`watchdog_child`] in a child process, kills it with SIGKILL, and checks that its
/// (shared, never dropped) server stops and its folder goes.
#[test]
fn the_server_ends_with_its_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["postgres::watchdog_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (port, folder) = loop {
        let line = lines.next().expect("the child printed its server").unwrap();
        // libtest prints the test's name on the same line, before the test's own output.
        if let Some((_, rest)) = line.split_once("watchdog-child ") {
            let (port, folder) = rest.split_once(' ').unwrap();
            break (port.parse::<u16>().unwrap(), PathBuf::from(folder));
        }
    };
    assert!(accepts_connections(port));
    assert!(folder.is_dir());

    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while (accepts_connections(port) || folder.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!accepts_connections(port), "the server outlived its process");
    assert!(!folder.exists(), "the server's folder outlived its process");
}

/// The child of [`the_server_ends_with_its_process`]: starts the shared server, says where it
/// is, and waits to be killed. Does nothing in an ordinary test run.
#[test]
fn watchdog_child() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return;
    }
    let server = PgServer::shared();
    let folder = server.data_dir().parent().unwrap().display().to_string();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "watchdog-child {} {folder}", server.port()).unwrap();
    stdout.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
