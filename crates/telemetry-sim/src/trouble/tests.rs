//! Tests of the `--trouble` syntax: what it accepts, and that what it refuses is refused with an
//! error naming the option and the part that is wrong.

use std::time::Duration;

use crate::trouble::{Trouble, TroubleKind, parse_trouble};

#[test]
fn parses_a_kind_an_optional_target_and_a_time_range() {
    assert_eq!(
        parse_trouble("lossy-uplink@30s..90s"),
        Ok(Trouble {
            kind: TroubleKind::LossyUplink,
            target: None,
            from: Duration::from_secs(30),
            until: Duration::from_secs(90),
        })
    );
    assert_eq!(
        parse_trouble("high-rtt:2.13@1m..2m 30s"),
        Ok(Trouble {
            kind: TroubleKind::HighRtt,
            target: Some((2, 13)),
            from: Duration::from_secs(60),
            until: Duration::from_secs(150),
        })
    );
    for kind in TroubleKind::ALL {
        let text = format!("{}:0.1@0s..500ms", kind.as_str());
        let trouble = parse_trouble(&text).expect("valid");
        assert_eq!(trouble.kind, kind);
        assert_eq!(trouble.to_string(), text, "displayed as written");
    }
}

#[test]
fn refuses_bad_input_naming_the_option_and_the_part() {
    for (text, names) in [
        ("lossy-uplink", "no `@`"),
        ("lossy@30s..90s", "unknown kind \"lossy\" (one of lossy-uplink, bad-downlink"),
        ("lossy-uplink:3@30s..90s", "target \"3\" is not ROOM.PARTICIPANT"),
        ("lossy-uplink:a.1@30s..90s", "room index \"a\""),
        ("lossy-uplink:0.-1@30s..90s", "participant index \"-1\""),
        ("lossy-uplink@30s", "no `..` in \"30s\""),
        ("lossy-uplink@soon..90s", "start \"soon\""),
        ("lossy-uplink@30s..", "end \"\""),
        ("lossy-uplink@90s..30s", "the start is not before the end"),
        ("lossy-uplink@30s..30s", "the start is not before the end"),
    ] {
        let error = parse_trouble(text).expect_err(text);
        assert!(error.starts_with(&format!("invalid `--trouble` {text:?}: ")), "{error}");
        assert!(error.contains(names), "{text}: {error}");
    }
}
