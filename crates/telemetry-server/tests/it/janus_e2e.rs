//! The end-to-end test with a real Janus and real browsers (issue 11): Debian's `janus` with its
//! stock sample event handler pointed at the running service, Chromium with a fake camera and
//! microphone running Janus's stock EchoTest and a VideoRoom call of two participants for 30 s;
//! then the query API shows the rooms, the participants under their display names with joined,
//! active and left times, their tracks with codecs, and upstream and downstream windows whose
//! average rates agree with the browsers' own `getStats()` within 20 %; and LiveKit's webhook
//! receivers (Python and Node) verify `room_started`, `participant_joined`, `track_published`,
//! `participant_left` and `room_finished`. Two Janus servers run at once, one with the handler's
//! `grouping` on (and `compress`), one with it off, each with its own EchoTest and VideoRoom call.
//!
//! It runs when `TELEMETRY_TEST_JANUS=1` (set by `cargo xtask test`, after
//! `tools/setup-janus.sh`, `tools/setup-browser.sh` and `tools/setup-conformance.sh`), as root:
//! Janus gathers no ICE candidates on a loopback interface, so the test runs itself again inside
//! a network namespace of its own (`unshare --net`), where a veth end `janus0` holds
//! `127.0.0.2/32` (`reference/janus-events.md`); the service, the receiver, both Janus servers,
//! the pages' web servers and Chromium all run there, and every packet stays on 127.0.0.0/8.
//! Everything it starts is stopped when it ends. Without the variable it is skipped with a
//! message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::receivers::{run_receiver, tools};
use crate::support::{ADMIN, INGESTER, TestApp, TestReceiver, endpoint_config, wait_for_api};

const ENABLE: &str = "TELEMETRY_TEST_JANUS";
/// Set in the copy of the test that runs inside the network namespace.
const INSIDE: &str = "TELEMETRY_TEST_JANUS_INSIDE";
const SETUP_HINT: &str = "run `bash tools/setup-janus.sh` and `bash tools/setup-browser.sh` as root (or `cargo xtask test`)";
const DEMOS: &str = "/usr/share/janus/demos";
const JANUS_LIBS: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// How long the calls last.
const CALL_SECONDS: u64 = 30;
/// Webhook signing secret (LiveKit's receivers want 32 bytes or more).
const SECRET: &str = "janus-e2e-webhook-secret-0123456789abcdef";

#[test]
fn janus_and_chromium_report_through_the_stock_event_handler() {
    if std::env::var(ENABLE).as_deref() != Ok("1") {
        eprintln!(
            "skipped: set {ENABLE}=1 (as root) to run the test with a real Janus and Chromium"
        );
        return;
    }
    if std::env::var(INSIDE).as_deref() == Ok("1") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(inside());
        return;
    }
    // Again, in a network namespace of its own.
    let started = Instant::now();
    let test = "janus_e2e::janus_and_chromium_report_through_the_stock_event_handler";
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status()
        .unwrap_or_else(|error| panic!("cannot run `unshare`: {error}: {SETUP_HINT}"));
    assert!(
        status.success(),
        "the test inside its network namespace failed ({status}); `unshare --net` needs root"
    );
    eprintln!("janus_e2e: passed in {:.0?}", started.elapsed());
}

/// A child process killed when dropped.
struct Child {
    name: String,
    child: std::process::Child,
}

impl Child {
    fn start(name: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}: {SETUP_HINT}"));
        Self { name: name.to_owned(), child }
    }

    /// Asks it to stop (SIGTERM: Janus then reports `shutdown`), and waits a little.
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop in 5 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}: {SETUP_HINT}"));
    assert!(status.success(), "{program} {args:?} failed with {status}");
}

/// The namespace's network: loopback up, and a veth pair whose end `janus0` holds 127.0.0.2/32
/// for Janus's ICE candidates. IPv6 address generation is off on both ends before they come up,
/// and the test waits a second: addresses appearing later abort Chromium's page loads.
fn network() {
    run("ip", &["link", "set", "lo", "up"]);
    run("ip", &["link", "add", "janus0", "type", "veth", "peer", "name", "janus1"]);
    for device in ["janus0", "janus1"] {
        run("ip", &["link", "set", device, "addrgenmode", "none"]);
    }
    run("ip", &["addr", "add", "127.0.0.2/32", "dev", "janus0"]);
    for device in ["janus0", "janus1"] {
        run("ip", &["link", "set", device, "up"]);
    }
    std::thread::sleep(Duration::from_secs(1));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port()
}

/// One Janus server of the test: how its sample event handler reports.
struct Janus {
    /// `server_name`: the events' `emitter`, the node.
    name: &'static str,
    grouping: bool,
    api_port: u16,
    pages_port: u16,
    rtp_ports: &'static str,
    dir: tempfile::TempDir,
}

impl Janus {
    fn new(name: &'static str, grouping: bool, rtp_ports: &'static str) -> Self {
        Self {
            name,
            grouping,
            api_port: free_port(),
            pages_port: free_port(),
            rtp_ports,
            dir: tempfile::tempdir().expect("a folder"),
        }
    }

    /// Its configuration: the stock files' settings that matter, everything else off. The three
    /// settings README.md names in `janus.eventhandler.sampleevh.jcfg` (`enabled`, `backend`,
    /// `backend_user`/`backend_pwd`) are what points it at the service.
    fn configure(&self, backend: &str) {
        let dir = self.dir.path();
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).expect("write a configuration file");
        };
        write(
            "janus.jcfg",
            format!(
                r#"general: {{
	configs_folder = "{dir}"
	plugins_folder = "{JANUS_LIBS}/plugins"
	transports_folder = "{JANUS_LIBS}/transports"
	events_folder = "{JANUS_LIBS}/events"
	loggers_folder = "{JANUS_LIBS}/loggers"
	debug_level = 4
	server_name = "{name}"
	event_handlers = true
}}
media: {{
	rtp_port_range = "{rtp}"
}}
nat: {{
	ice_enforce_list = "janus0"
	ignore_mdns = true
}}
plugins: {{
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}}
transports: {{
	disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so"
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
events: {{
	broadcast = true
	disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_wsevh.so"
	stats_period = 1
	combine_media_stats = false
}}
"#,
                dir = dir.display(),
                name = self.name,
                rtp = self.rtp_ports,
            ),
        );
        write(
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n\tjson = \"compact\"\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = {}\n\tinterface = \"lo\"\n\thttps = false\n}}\nadmin: {{\n\tadmin_http = false\n}}\ncors: {{\n\tallow_origin = \"*\"\n}}\n",
                self.api_port
            ),
        );
        write(
            "janus.eventhandler.sampleevh.jcfg",
            format!(
                "general: {{\n\tenabled = true\n\tevents = \"all\"\n\tgrouping = {grouping}\n\tjson = \"plain\"\n\tcompress = {grouping}\n\tbackend = \"{backend}\"\n\tbackend_user = \"{user}\"\n\tbackend_pwd = \"{password}\"\n\tmax_retransmissions = 5\n\tretransmissions_backoff = 100\n}}\n",
                grouping = self.grouping,
                user = INGESTER.0,
                password = INGESTER.1,
            ),
        );
        write(
            "janus.plugin.videoroom.jcfg",
            "general: {\n}\nroom-1234: {\n\tdescription = \"Demo Room\"\n\tpublishers = 6\n\tbitrate = 128000\n\tfir_freq = 10\n}\n".to_owned(),
        );
        write("janus.plugin.echotest.jcfg", "general: {\n}\n".to_owned());
    }

    fn start(&self) -> Child {
        let dir = self.dir.path();
        let config = dir.join("janus.jcfg");
        let log = dir.join("janus.log");
        Child::start(
            self.name,
            Command::new("janus")
                .args(["-F", &dir.display().to_string(), "-C", &config.display().to_string()])
                .args(["-L", &log.display().to_string(), "-N", "-o"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("janus.log")).unwrap_or_default()
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}/janus", self.api_port)
    }
}

/// Serves Janus's stock demo pages, with a `settings.js` of ours pointing them at `api` (Debian's
/// lacks `token` and `apisecret`, and `iceServers` must be an empty list on loopback).
async fn serve_pages(port: u16, api: String) {
    let settings = format!(
        "var server = \"{api}\";\nvar iceServers = [];\nvar token = null;\nvar apisecret = null;\n"
    );
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let settings = settings.clone();
        async move {
            use axum::response::IntoResponse as _;
            let path = uri.path().trim_start_matches('/');
            if path == "settings.js" {
                return ([("content-type", "text/javascript")], settings).into_response();
            }
            if path.split('/').any(|part| part == ".." || part.is_empty()) {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let file = Path::new(DEMOS).join(path);
            let content_type = match file.extension().and_then(|ext| ext.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("png") => "image/png",
                Some("svg") => "image/svg+xml",
                Some("woff") => "font/woff",
                Some("woff2") => "font/woff2",
                _ => "application/octet-stream",
            };
            match std::fs::read(&file) {
                Ok(bytes) => ([("content-type", content_type)], bytes).into_response(),
                Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the pages' port");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

async fn wait_until_up(janus: &Janus) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(format!("{}/info", janus.api())).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer in 20 s:\n{}",
            janus.name,
            janus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tools/browser/janus.mjs` over `scenario`; returns its result.
async fn browsers(scenario: Value) -> Value {
    let dir = workspace_root().join("tools/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: {SETUP_HINT}"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new("node")
            .arg("janus.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run node: {error}: {SETUP_HINT}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(scenario.to_string().as_bytes())
            .expect("write the scenario");
        let output = child.wait_with_output().expect("wait for janus.mjs");
        assert!(output.status.success(), "janus.mjs failed with {}", output.status);
        serde_json::from_slice(&output.stdout).expect("janus.mjs writes JSON")
    })
    .await
    .expect("janus.mjs")
}

fn millis(time: &Value) -> f64 {
    let time = humantime::parse_rfc3339(time.as_str().expect("an RFC 3339 time"))
        .expect("an RFC 3339 time");
    time.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs_f64() * 1000.0
}

/// Bytes a page had sent or received (`direction`) of `kind` at `at`, interpolated between its
/// samples.
fn bytes_at(page: &Value, direction: &str, kind: &str, at: f64) -> f64 {
    let points: Vec<(f64, f64)> = page["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|sample| {
            (sample["t"].as_f64().expect("t"), sample[direction][kind].as_f64().expect("bytes"))
        })
        .collect();
    let (first, last) = (points[0], points[points.len() - 1]);
    if at <= first.0 {
        return first.1;
    }
    if at >= last.0 {
        return last.1;
    }
    let pair = points.windows(2).find(|pair| pair[0].0 <= at && at <= pair[1].0).expect("inside");
    let (t0, b0, t1, b1) = (pair[0].0, pair[0].1, pair[1].0, pair[1].1);
    b0 + (b1 - b0) * (at - t0) / (t1 - t0)
}

async fn inside() {
    let started = Instant::now();
    for path in [DEMOS, JANUS_LIBS, "/usr/bin/janus", "/usr/bin/chromium"] {
        assert!(Path::new(path).exists(), "{path} is missing: {SETUP_HINT}");
    }
    network();
    let receiver = TestReceiver::start().await;
    let app = TestApp::start_with(&format!(
        "[janus]\nroom_idle_timeout = \"3s\"\n{}",
        endpoint_config(&receiver.url("/hook"), "livekit", SECRET)
    ))
    .await;
    let backend = app.url("/v1/ingest/janus");
    let servers = [
        Janus::new("janus-grouped", true, "20000-20499"),
        Janus::new("janus-single", false, "20500-20999"),
    ];
    let mut children = Vec::new();
    for janus in &servers {
        janus.configure(&backend);
        children.push(janus.start());
        serve_pages(janus.pages_port, janus.api()).await;
    }
    for janus in &servers {
        wait_until_up(janus).await;
    }
    eprintln!("janus_e2e: Janus servers up after {:.1?}", started.elapsed());

    // Per server: an EchoTest, and a VideoRoom call of two in room 1234.
    let mut pages = Vec::new();
    for janus in &servers {
        let base = format!("http://127.0.0.1:{}", janus.pages_port);
        let mode = janus.name.trim_start_matches("janus-");
        pages.push(json!({"name": format!("echo-{mode}"), "kind": "echotest",
            "url": format!("{base}/echotest.html")}));
        for person in ["alice", "bob"] {
            pages.push(json!({"name": format!("{person}{mode}"), "kind": "videoroom",
                "display": format!("{person}{mode}"), "room": janus.name,
                "url": format!("{base}/videoroomtest.html?room=1234")}));
        }
    }
    let result = browsers(json!({"seconds": CALL_SECONDS, "pages": pages})).await;
    eprintln!("janus_e2e: calls done after {:.1?}", started.elapsed());
    let pages: BTreeMap<String, Value> = result["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|page| (page["name"].as_str().expect("name").to_owned(), page.clone()))
        .collect();

    // Six rooms' worth of events: the EchoTests end with their handles, the VideoRooms
    // `room_idle_timeout` after their last participant.
    let rooms = wait_for_api(&app, "/v1/rooms?limit=100", Duration::from_secs(30), |body| {
        let rooms = body["rooms"].as_array().map_or(&[][..], Vec::as_slice);
        rooms.len() >= 4 && rooms.iter().all(|room| room["endedAt"].is_string())
    })
    .await;
    for child in &mut children {
        child.stop();
    }
    app.flush().await;

    let mut seen_names = BTreeSet::new();
    let mut compared = 0;
    for room in rooms["rooms"].as_array().expect("rooms") {
        let sid = room["sid"].as_str().expect("sid");
        let detail = app.get_ok(&format!("/v1/rooms/{sid}")).await;
        let events = app.get_ok(&format!("/v1/rooms/{sid}/events?limit=1")).await;
        let node = events["events"][0]["nodeId"].as_str().expect("a node").to_owned();
        let mode = node.trim_start_matches("janus-").to_owned();
        let name = room["name"].as_str().expect("name");
        seen_names.insert(format!("{node}/{}", if name == "1234" { "1234" } else { "echotest" }));
        let participants = detail["participants"].as_array().expect("participants");
        let tracks = detail["tracks"].as_array().expect("tracks");
        let identities: BTreeMap<&str, &str> = participants
            .iter()
            .map(|p| (p["sid"].as_str().expect("sid"), p["identity"].as_str().expect("identity")))
            .collect();
        if name == "1234" {
            let mut names: Vec<&str> = identities.values().copied().collect();
            names.sort_unstable();
            assert_eq!(names, [format!("alice{mode}"), format!("bob{mode}")], "{detail}");
        } else {
            assert!(name.starts_with("echotest-"), "{detail}");
            assert_eq!(participants.len(), 1, "{detail}");
        }
        for participant in participants {
            assert_eq!(participant["state"], "left", "{detail}");
            let (joined, active, left) = (
                millis(&participant["joinedAt"]),
                millis(&participant["activeAt"]),
                millis(&participant["leftAt"]),
            );
            assert!(joined <= active && active < left, "{participant}");
            assert!(left - active >= (CALL_SECONDS as f64 - 2.0) * 1000.0, "{participant}");
        }
        let mut mimes: Vec<&str> =
            tracks.iter().map(|t| t["mimeType"].as_str().expect("mime")).collect();
        mimes.sort_unstable();
        let expected = if name == "1234" { 2 } else { 1 };
        assert_eq!(
            mimes.iter().filter(|mime| **mime == "audio/opus").count(),
            expected,
            "{detail}"
        );
        assert_eq!(mimes.iter().filter(|mime| **mime == "video/VP8").count(), expected, "{detail}");

        // Average rates against the browsers' own counters over the same window.
        let stats = app.get_ok(&format!("/v1/stats?roomSid={sid}")).await;
        let kinds: BTreeMap<&str, &str> = tracks
            .iter()
            .map(|t| {
                (
                    t["sid"].as_str().expect("sid"),
                    if t["type"] == "VIDEO" { "video" } else { "audio" },
                )
            })
            .collect();
        let mut directions = BTreeSet::new();
        for series in stats["series"].as_array().expect("series") {
            if series["kind"] != "media" {
                continue;
            }
            let kind = kinds[series["trackSid"].as_str().expect("track")];
            let direction = series["direction"].as_str().expect("direction");
            let identity = identities[series["participantSid"].as_str().expect("participant")];
            let page =
                if name == "1234" { &pages[identity] } else { &pages[&format!("echo-{mode}")] };
            let side = if direction == "upstream" { "sent" } else { "received" };
            directions.insert((identity.to_owned(), direction.to_owned(), kind));
            for window in series["windows"].as_array().expect("windows") {
                let (start, end) = (millis(&window["start"]), millis(&window["end"]));
                let browser = (bytes_at(page, side, kind, end) - bytes_at(page, side, kind, start))
                    * 8000.0
                    / (end - start);
                let ours = window["avgBps"].as_f64().expect("avgBps");
                let ratio = ours / browser;
                eprintln!(
                    "janus_e2e: {node} {name} {identity} {direction} {kind}: {ours:.0} bit/s, the browser {browser:.0} bit/s ({ratio:.3}) over {:.1} s",
                    (end - start) / 1000.0
                );
                assert!(
                    (0.8..=1.2).contains(&ratio),
                    "{node} {name} {identity} {direction} {kind}: {ours:.0} against {browser:.0} bit/s: {window}"
                );
                compared += 1;
            }
        }
        let expected = if name == "1234" { 8 } else { 4 };
        assert_eq!(
            directions.len(),
            expected,
            "upstream and downstream of every track: {directions:?}"
        );
    }
    assert_eq!(
        seen_names,
        [
            "janus-grouped/1234",
            "janus-grouped/echotest",
            "janus-single/1234",
            "janus-single/echotest"
        ]
        .map(str::to_owned)
        .into_iter()
        .collect(),
        "{rooms}"
    );
    assert_eq!(compared, 24, "every media window compared");

    // LiveKit's own receivers verify every webhook, and the lifecycle is all there per server.
    let received = receiver
        .wait_for(Duration::from_secs(30), |received| {
            received.iter().filter(|r| r.json()["event"] == "room_finished").count() >= 4
        })
        .await;
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for request in &received {
        let body = request.json();
        let room = body["room"]["name"].as_str().unwrap_or("").to_owned();
        let room = if room == "1234" { room } else { "echotest".to_owned() };
        seen.insert((body["event"].as_str().expect("event").to_owned(), room));
    }
    for event in [
        "room_started",
        "participant_joined",
        "track_published",
        "participant_left",
        "room_finished",
    ] {
        for room in ["1234", "echotest"] {
            assert!(
                seen.contains(&(event.to_owned(), room.to_owned())),
                "no {event} for {room}: {seen:?}"
            );
        }
    }
    let joined = received.iter().filter(|r| r.json()["event"] == "participant_joined").count();
    assert_eq!(joined, 6, "two EchoTests and four VideoRoom participants");
    match tools() {
        None => panic!(
            "LiveKit's webhook receivers are needed: set TELEMETRY_TEST_CONFORMANCE=1 and run tools/setup-conformance.sh"
        ),
        Some(tools) => {
            let cases: Vec<Value> = received
                .iter()
                .enumerate()
                .map(|(index, request)| {
                    json!({"name": format!("{index}"), "body": request.body,
                        "authorization": request.headers.get("authorization")
                            .and_then(|value| value.to_str().ok()).unwrap_or(""),
                        "key": ADMIN.0, "secret": SECRET})
                })
                .collect();
            for (program, script) in [
                (tools.python.clone(), "verify_livekit.py"),
                (PathBuf::from("node"), "verify_livekit.mjs"),
            ] {
                let results = run_receiver(&program, &tools.dir.join(script), &tools.dir, &cases);
                for (result, request) in results.iter().zip(&received) {
                    assert_eq!(result["ok"], true, "{script}: {result}");
                    assert_eq!(result["event"], request.json()["event"], "{script}: {result}");
                }
            }
        }
    }
    app.stop().await;
    eprintln!("janus_e2e: checked in {:.1?}", started.elapsed());
}
