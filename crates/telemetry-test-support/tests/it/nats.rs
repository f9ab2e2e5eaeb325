//! `NatsServer`: a private `nats-server -js` that stops, restarts on its port, and goes away with
//! its folder when dropped or when its process is killed.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telemetry_test_support::nats::NatsServer;

const CHILD_VARIABLE: &str = "TELEMETRY_TEST_NATS_WATCHDOG_CHILD";

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[test]
fn the_server_stops_restarts_on_its_port_and_goes_with_its_folder_when_dropped() {
    let mut server = NatsServer::start().expect("start");
    let port = server.port();
    let folder = server.folder().to_path_buf();
    assert!(accepts_connections(port));
    assert!(server.log().contains("JetStream"), "JetStream is on: {}", server.log());
    server.stop().expect("stop");
    assert!(!accepts_connections(port));
    server.restart().expect("restart");
    assert!(accepts_connections(port));
    assert!(folder.join("jetstream").is_dir());
    drop(server);
    assert!(!accepts_connections(port));
    assert!(!folder.exists());
}

/// Runs [`nats_watchdog_child`] in a child process, kills it with SIGKILL, and checks that its
/// (shared, never dropped) server stops and its folder goes.
#[test]
fn the_server_ends_with_its_process() {
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["nats::nats_watchdog_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VARIABLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (port, folder) = loop {
        let line = lines.next().expect("the child printed its server").expect("a line");
        if let Some((_, rest)) = line.split_once("nats-watchdog-child ") {
            let (port, folder) = rest.split_once(' ').expect("port and folder");
            break (port.parse::<u16>().expect("a port"), PathBuf::from(folder));
        }
    };
    assert!(accepts_connections(port));
    assert!(folder.is_dir());

    child.kill().expect("kill");
    child.wait().expect("wait");
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
fn nats_watchdog_child() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return;
    }
    let server = NatsServer::shared();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "nats-watchdog-child {} {}", server.port(), server.folder().display())
        .expect("write");
    stdout.flush().expect("flush");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
