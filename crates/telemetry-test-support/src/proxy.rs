//! A TCP proxy in front of a PostgreSQL server that loses the answer to one `COMMIT`: once
//! armed with a marker, the next `COMMIT` sent on a connection that sent the marker since its
//! previous `COMMIT` is passed on to the server, and then the connection is closed on the
//! client's side before the server's answer reaches it. The transaction commits; its client only
//! learns that the connection was lost (an ambiguous commit).
//!
//! ```ignore
//! let proxy = LoseCommitAnswer::start(server_port).expect("proxy");
//! // connect to 127.0.0.1:proxy.port() instead of the server
//! proxy.arm(b"node-under-test");
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The simple-query message's text of `COMMIT`, with its terminating NUL (what a client library
/// sends for a transaction's commit).
const COMMIT: &[u8] = b"COMMIT\0";

/// The proxy; it runs (on threads of its own) as long as the test process does.
#[derive(Debug)]
pub struct LoseCommitAnswer {
    port: u16,
    armed: Arc<Mutex<Option<Vec<u8>>>>,
}

impl LoseCommitAnswer {
    /// Starts a proxy on a free port of 127.0.0.1 in front of the server at `server_port`.
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound.
    pub fn start(server_port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let armed: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let shared = armed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let armed = shared.clone();
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) {
                        relay(client, server, &armed);
                    }
                });
            }
        });
        Ok(Self { port, armed })
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next `COMMIT` of a transaction whose connection sent `marker` (anywhere in its bytes:
    /// a statement's text or a parameter) loses its answer.
    pub fn arm(&self, marker: &[u8]) {
        *self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(marker.to_vec());
    }

    /// Whether the proxy is still armed (no `COMMIT` has lost its answer since [`Self::arm`]).
    pub fn armed(&self) -> bool {
        self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }
}

/// Relays one connection until either side closes, or until it cuts the connection at an armed
/// `COMMIT`.
fn relay(client: TcpStream, server: TcpStream, armed: &Mutex<Option<Vec<u8>>>) {
    let (Ok(mut to_client), Ok(mut from_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let cut = Arc::new(AtomicBool::new(false));
    let cut_seen = cut.clone();
    let answers = std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read @ 1..) = from_server.read(&mut buffer) {
            if cut_seen.load(Ordering::SeqCst) {
                // The client's side is closed; the server's answers are drained.
                let _ = to_client.shutdown(Shutdown::Both);
                continue;
            }
            if to_client.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let (mut from_client, mut to_server) = (client, server);
    let mut buffer = vec![0; 64 * 1024];
    let mut marked = false;
    while let Ok(read @ 1..) = from_client.read(&mut buffer) {
        let chunk = &buffer[..read];
        let mut armed = armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(marker) = armed.as_deref() {
            marked |= contains(chunk, marker);
        }
        if contains(chunk, COMMIT) {
            if marked && armed.is_some() {
                *armed = None;
                drop(armed);
                // Cut before the server can answer; its FIN comes after the data, so the server
                // reads the COMMIT (and runs it) before it sees the end.
                cut.store(true, Ordering::SeqCst);
                let _ = to_server.write_all(chunk);
                let _ = to_server.shutdown(Shutdown::Write);
                let _ = from_client.shutdown(Shutdown::Both);
                break;
            }
            marked = false;
        }
        drop(armed);
        if to_server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Write);
    let _ = answers.join();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
