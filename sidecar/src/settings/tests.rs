use std::collections::HashMap;

use super::source::Layered;
use super::*;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_source(&map)
}

#[test]
fn defaults_are_valid_and_single_threaded() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:15080");
    assert_eq!(s.admin_listen.to_string(), "0.0.0.0:15090");
    assert_eq!(s.workers, 1);
    assert_eq!(s.source, ConfigSource::None);
    assert_eq!(s.max_body_bytes, 32 << 20);
    assert_eq!(s.buffer_budget_bytes, 256 << 20);
    assert_eq!(s.upstreams.anthropic.host(), Some("api.anthropic.com"));
    assert_eq!(s.access_log, Some(Sink::Stderr));
    assert!(s.credential_headers.is_empty());
}

#[test]
fn every_bad_setting_is_reported_with_its_flag_and_variable() {
    let err = settings(&[
        ("AIFLAGS_LISTEN", "nope"),
        ("AIFLAGS_WORKERS", "0"),
        ("AIFLAGS_OPENAI_UPSTREAM", "ftp://x"),
        ("AIFLAGS_DRAIN_TIMEOUT", "soon"),
        ("AIFLAGS_LOG_FORMAT", "xml"),
        ("AIFLAGS_CONFIG_FILE", "a"),
        ("AIFLAGS_FLAGS", "b"),
        ("AIFLAGS_CREDENTIAL_HEADERS", "x-ok, bad header"),
        ("AIFLAGS_MAX_CONNECTIONS", "-1"),
        ("AIFLAGS_IDLE_TIMEOUT", "0s"),
    ])
    .unwrap_err();
    let text = err.to_string();
    for name in [
        "--listen (AIFLAGS_LISTEN)",
        "--workers (AIFLAGS_WORKERS)",
        "--openai-upstream",
        "--drain-timeout",
        "AIFLAGS_LOG_FORMAT",
        "not both",
        "\"bad header\" is not a header name",
        "--max-connections",
        "--idle-timeout (AIFLAGS_IDLE_TIMEOUT): \"0s\" must be longer than zero",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert_eq!(err.problems.len(), 9);
}

#[test]
fn paths_extra_headers_and_the_access_log_sink() {
    let s = settings(&[
        ("AIFLAGS_FLAGS", "flags/"),
        ("AIFLAGS_POD_LABELS", "/etc/podinfo/labels"),
        ("AIFLAGS_CREDENTIAL_HEADERS", "X-Company-Token, x-other"),
        ("AIFLAGS_ACCESS_LOG", "off"),
    ])
    .unwrap();
    assert_eq!(s.source, ConfigSource::Flags("flags/".into()));
    assert_eq!(s.pod_labels, Some(PathBuf::from("/etc/podinfo/labels")));
    assert_eq!(s.credential_headers, ["x-company-token", "x-other"]);
    assert_eq!(s.access_log, None);
    let to_file = settings(&[("AIFLAGS_ACCESS_LOG", "/tmp/access.log")]).unwrap();
    assert_eq!(
        to_file.access_log,
        Some(Sink::File("/tmp/access.log".into()))
    );
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let cli =
        Cli::try_parse_from(["aiflags-sidecar", "--listen", "127.0.0.1:1", "--workers=2"]).unwrap();
    let env = [
        ("AIFLAGS_LISTEN", "127.0.0.1:2"),
        ("AIFLAGS_ADMIN_LISTEN", "127.0.0.1:3"),
    ];
    let s = Settings::from_source(&Layered(vec![&cli.args, &env])).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:1");
    assert_eq!(s.admin_listen.to_string(), "127.0.0.1:3");
    assert_eq!(s.workers, 2);
}

#[test]
fn help_names_every_variable_and_default() {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let help = cmd.render_long_help().to_string();
    for setting in SETTINGS {
        assert!(
            help.contains(&format!("--{}", setting.flag)),
            "{}",
            setting.flag
        );
        assert!(help.contains(setting.env), "{}", setting.env);
    }
    assert!(help.contains("[default: 127.0.0.1:15080]"));
}
