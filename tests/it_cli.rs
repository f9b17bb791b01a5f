//! The `verdict` binary, end to end: `eval`, `check` and `test` on the
//! example bundle, on broken bundles (tests/fixtures/broken), on a `.tar.gz`
//! and on a Kubernetes ConfigMap layout; exit statuses as api.md defines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KMS: &str = "examples/bundles/kms";
const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run verdict")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eval_one_request_prints_the_decision() {
    let o = verdict(&[
        "eval",
        "--bundle",
        KMS,
        "--principal",
        "arn:aws:iam::111122223333:user/frank",
        "--action",
        "kms:Encrypt",
        "--resource",
        KEY,
        "--explain",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let d: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(d["decision"], "Allow");
    assert_eq!(d["bundle_revision"], "2026-11-28.1");
    assert_eq!(d["matched"][0]["policy_id"], "keys/default-key-policy");
    assert_eq!(d["matched"][0]["kind"], "key_policy");
    assert_eq!(
        d["matched"][1]["policy_id"],
        "kms/encrypt-decrypt-specific-keys"
    );
    assert_eq!(d["matched"][1]["line"], 3);
    assert_eq!(d["explanation"]["allowed_by_boundary"], true);
}

#[test]
fn eval_context_flags() {
    let base = [
        "eval",
        "--bundle",
        KMS,
        "--principal",
        "arn:aws:sts::111122223333:assumed-role/PaymentsWorker/i-1",
        "--action",
        "kms:Decrypt",
        "--resource",
        KEY,
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = verdict(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["decision"].clone()
    };
    assert_eq!(
        with(&["--context", "kms:EncryptionContext:dept=payments"]),
        "Allow"
    );
    assert_eq!(
        with(&[
            "--context-json",
            r#"{"kms:EncryptionContext:dept": "payments"}"#
        ]),
        "Allow"
    );
    assert_eq!(
        with(&["--context", "kms:EncryptionContext:dept="]),
        "ImplicitDeny"
    );
    assert_eq!(with(&[]), "ImplicitDeny");
}

#[test]
fn eval_invalid_request_exits_1_naming_the_field() {
    let o = verdict(&[
        "eval",
        "--bundle",
        KMS,
        "--principal",
        "anonymous",
        "--action",
        "kms:Decrypt",
        "--resource",
        KEY,
    ]);
    assert_eq!(code(&o), 1);
    let e: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(e["error"]["field"], "principal");
    let o = verdict(&[
        "eval",
        "--bundle",
        KMS,
        "--principal",
        "arn:aws:iam::111122223333:root",
        "--action",
        "Decrypt",
        "--resource",
        KEY,
    ]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("\"field\":\"action\""));
}

#[test]
fn eval_requests_file_keeps_order_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("requests.jsonl");
    let lines = [
        format!(
            r#"{{"principal": "arn:aws:iam::111122223333:user/dave", "action": "kms:Encrypt", "resource": "{KEY}"}}"#
        ),
        r#"{"principal": "arn:aws:iam::111122223333:user/dave", "action": "kms:Encrypt"}"#
            .to_owned(),
        "not json".to_owned(),
        format!(
            r#"{{"principal": "arn:aws:sts::111122223333:assumed-role/PaymentsWorker/x", "action": "kms:Decrypt", "resource": "{KEY}", "context": {{"kms:EncryptionContext:dept": "payments"}}, "explain": true}}"#
        ),
        format!(
            r#"{{"principal": "arn:aws:iam::111122223333:user/dave", "action": "kms:Encrypt", "resource": "{KEY}", "context": {{"k": null}}}}"#
        ),
    ];
    fs::write(&file, lines.join("\n") + "\n").unwrap();
    let o = verdict(&[
        "eval",
        "--bundle",
        KMS,
        "--requests",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let out: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 5);
    assert_eq!(out[0]["decision"], "Allow");
    assert_eq!(out[1]["error"]["line"], 2);
    assert_eq!(out[1]["error"]["field"], "resource");
    assert_eq!(out[2]["error"]["line"], 3);
    assert_eq!(out[3]["decision"], "Allow");
    assert_eq!(
        out[3]["explanation"]["grant_id"],
        "abcde1237f76e4ba7987489ac329fbfba6ad343d6f7075dbd1ef191f0120514a"
    );
    assert_eq!(out[4]["error"]["field"], "context[k]");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        code(&verdict(&[
            "eval",
            "--bundle",
            "https://example.com/b.tar.gz",
            "--requests",
            "-"
        ])),
        2
    );
    assert_eq!(
        code(&verdict(&[
            "eval",
            "--bundle",
            "/nonexistent",
            "--requests",
            "-"
        ])),
        2
    );
    assert_eq!(code(&verdict(&["eval", "--principal", "x"])), 2);
    assert_eq!(code(&verdict(&["check", "/nonexistent"])), 2);
    assert_eq!(code(&verdict(&["check", "Cargo.toml"])), 2);
    assert_eq!(code(&verdict(&["test"])), 2);
    assert_eq!(code(&verdict(&["frobnicate"])), 2);
}

#[test]
fn check_and_test_the_example_bundle() {
    let o = verdict(&["check", KMS]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // check's findings and summary are its result: on stdout.
    assert!(stdout(&o).contains("0 error(s)"), "{}", stdout(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = verdict(&["test", KMS]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(" passed, 0 failed"));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn test_reports_failures_with_what_it_got() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join(KMS), dir.path());
    fs::write(
        dir.path().join("tests/wrong.json"),
        format!(
            r#"{{"name": "wrong", "cases": [{{"name": "dave may not encrypt", "principal": "arn:aws:iam::111122223333:user/dave",
               "action": "kms:Encrypt", "resource": "{KEY}", "expect": "ImplicitDeny"}}]}}"#
        ),
    )
    .unwrap();
    let o = verdict(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    assert!(out.contains("FAIL tests/wrong.json:1:"), "{out}");
    assert!(out.contains("expected ImplicitDeny, got Allow"), "{out}");
    assert!(
        out.contains("kms/encrypt-decrypt-any-key-in-account#0 (group, Allow)"),
        "{out}"
    );
    // check validates tests/ too: an unknown expectation is an error with its location.
    fs::write(
        dir.path().join("tests/wrong.json"),
        r#"{"cases": [{"principal": "arn:aws:iam::111122223333:user/dave", "action": "kms:Encrypt", "resource": "*", "expect": "Maybe"}]}"#,
    )
    .unwrap();
    let o = verdict(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("error: tests/wrong.json:1:"),
        "{}",
        stdout(&o)
    );
    // No tests/: a warning, exit 0.
    fs::remove_dir_all(dir.path().join("tests")).unwrap();
    let o = verdict(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains("no tests/"));
}

#[test]
fn tar_gz_bundles_load_with_or_without_a_top_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (name, prefix) in [("flat.tar.gz", ""), ("nested.tgz", "kms-bundle/")] {
        let path = dir.path().join(name);
        let file = fs::File::create(&path).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(
            prefix.trim_end_matches('/').to_owned() + if prefix.is_empty() { "." } else { "" },
            root().join(KMS),
        )
        .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let o = verdict(&["test", path.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{name}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains(" passed, 0 failed"));
    }
}

#[cfg(unix)]
#[test]
fn configmap_volume_is_read_through_data() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("..2026_11_28_06_00_00.123");
    copy_dir(&root().join(KMS), &version);
    symlink("..2026_11_28_06_00_00.123", dir.path().join("..data")).unwrap();
    for name in [
        "manifest.json",
        "principals.json",
        "resources.json",
        "grants.json",
        "policies",
        "tests",
    ] {
        symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
    }
    // An older version left behind must not be read.
    let old = dir.path().join("..2026_11_27_00_00_00.000");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("manifest.json"), "{broken").unwrap();
    let o = verdict(&["test", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let o = verdict(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    assert!(!stdout(&o).contains("warning:"), "{}", stdout(&o));
}

#[derive(serde::Deserialize)]
struct Expect {
    errors: Vec<ExpectedError>,
}

#[derive(serde::Deserialize)]
struct ExpectedError {
    file: String,
    pointer: String,
    line: Option<u32>,
    column: Option<u32>,
    contains: String,
}

#[derive(serde::Deserialize)]
struct ExpectWarnings {
    warnings: Vec<ExpectedError>,
}

/// Bundles that load with located warnings (tests/fixtures/warned): a
/// policy value its operator cannot read loads and matches nothing (U46).
#[test]
fn warned_bundles_load_with_located_warnings() {
    let corpus = root().join("tests/fixtures/warned");
    let mut failures = Vec::new();
    for entry in fs::read_dir(&corpus).unwrap() {
        let case = entry.unwrap().path();
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let bundle = case.join("bundle");
        let expect: ExpectWarnings =
            serde_json::from_str(&fs::read_to_string(case.join("expect.json")).unwrap()).unwrap();
        let o = verdict(&["check", bundle.to_str().unwrap()]);
        let out = stdout(&o);
        if code(&o) != 0 {
            failures.push(format!("{name}: check exited {} (want 0)\n{out}", code(&o)));
        }
        for w in &expect.warnings {
            let prefix = format!(
                "warning: {}:{}:{}: {}: ",
                w.file,
                w.line.unwrap(),
                w.column.unwrap(),
                w.pointer
            );
            if !out
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(&w.contains))
            {
                failures.push(format!(
                    "{name}: no line `{prefix}…{}…` in:\n{out}",
                    w.contains
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn broken_bundles_give_located_errors() {
    let corpus = root().join("tests/fixtures/broken");
    let mut cases: Vec<PathBuf> = fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let bundle = case.join("bundle");
        let bundle = bundle.to_str().unwrap();
        let expect: Expect =
            serde_json::from_str(&fs::read_to_string(case.join("expect.json")).unwrap()).unwrap();
        let o = verdict(&["check", bundle]);
        let err = stdout(&o);
        if code(&o) != 1 {
            failures.push(format!("{name}: check exited {} (want 1)\n{err}", code(&o)));
        }
        for e in &expect.errors {
            let mut prefix = String::from("error: ");
            if !e.file.is_empty() {
                prefix.push_str(&e.file);
                if let (Some(l), Some(c)) = (e.line, e.column) {
                    prefix.push_str(&format!(":{l}:{c}"));
                }
                prefix.push_str(": ");
            }
            if !e.pointer.is_empty() {
                prefix.push_str(&e.pointer);
                prefix.push_str(": ");
            }
            if !err
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(&e.contains))
            {
                failures.push(format!(
                    "{name}: no line `{prefix}…{}…` in:\n{err}",
                    e.contains
                ));
            }
        }
        let o = verdict(&[
            "eval",
            "--bundle",
            bundle,
            "--principal",
            "arn:aws:iam::111122223333:root",
            "--action",
            "s3:GetObject",
            "--resource",
            "*",
        ]);
        if code(&o) != 2 {
            failures.push(format!("{name}: eval exited {} (want 2)", code(&o)));
        }
        if !stdout(&o).is_empty() {
            failures.push(format!(
                "{name}: eval printed a decision for a bundle that does not load"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn unreachable_servers_and_missing_socket_directories_say_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let o = verdict(&["health", "--uds", sock.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no socket there"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("transport error"), "{}", stderr(&o));
    let o = verdict(&["health", "--addr", "127.0.0.1:1", "--timeout-ms", "500"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("nothing is listening there"),
        "{}",
        stderr(&o)
    );
    let missing = dir.path().join("no/such/dir/verdict.sock");
    let o = verdict(&["serve", "--uds", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("does not exist; create it"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_prints_every_setting_with_its_origin_and_serve_help_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("verdict.toml");
    fs::write(&file, "max_batch = 50\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "config",
            "--config",
            file.to_str().unwrap(),
            "--uds",
            "/tmp/v.sock",
        ])
        .env("VERDICT_CACHE_MAX_ENTRIES", "10")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), verdict::config::SETTINGS.len());
    assert!(out.contains("uds = /tmp/v.sock  (--uds)"), "{out}");
    assert!(
        out.contains("cache_max_entries = 10  (VERDICT_CACHE_MAX_ENTRIES)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("max_batch = 50  ({}: max_batch)", file.display())),
        "{out}"
    );
    assert!(out.contains("max_arn_bytes = 2048  (default)"), "{out}");
    // A bad value is reported, as serve would, with status 2.
    let o = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["config"])
        .env("VERDICT_MAX_BATCH", "x")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("VERDICT_MAX_BATCH"));
    let help = stdout(&verdict(&["serve", "--help"]));
    for name in verdict::config::SETTINGS {
        let env = format!("VERDICT_{}", name.to_ascii_uppercase());
        assert!(help.contains(&env), "{env} not in serve --help");
    }
}

#[test]
fn a_reader_that_goes_away_never_makes_a_command_panic() {
    for args in [
        vec!["test", KMS],
        vec!["config"],
        vec![
            "eval",
            "--bundle",
            KMS,
            "--principal",
            "arn:aws:iam::111122223333:user/frank",
            "--action",
            "kms:Encrypt",
            "--resource",
            "*",
        ],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_verdict"))
            .current_dir(root())
            .args(&args)
            .stdout(writer)
            .output()
            .unwrap();
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert_ne!(o.status.code(), Some(101), "{args:?}");
    }
}

#[test]
fn every_command_takes_the_bundle_as_path_or_as_bundle() {
    let frank = [
        "--principal",
        "arn:aws:iam::111122223333:user/frank",
        "--action",
        "kms:Encrypt",
        "--resource",
        KEY,
    ];
    for command in ["eval", "check", "test"] {
        let extra: &[&str] = if command == "eval" { &frank } else { &[] };
        let positional = verdict(&[&[command, KMS], extra].concat());
        let flag = verdict(&[&[command, "--bundle", KMS], extra].concat());
        assert_eq!(code(&positional), 0, "{command}: {}", stderr(&positional));
        assert_eq!(stdout(&positional), stdout(&flag), "{command}");
        assert_eq!(code(&positional), code(&flag), "{command}");
    }
    let o = verdict(&["config", KMS]);
    assert!(
        stdout(&o).contains(&format!("bundle = {KMS}  (--bundle)")),
        "{}",
        stdout(&o)
    );
    assert_eq!(code(&verdict(&["check", KMS, "--bundle", KMS])), 2);
}

#[test]
fn check_reports_the_same_findings_as_json() {
    let good = verdict(&["check", KMS, "--format", "json"]);
    assert_eq!(code(&good), 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&good)).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
    assert_eq!(report["revision"], "2026-11-28.1");
    assert!(report["test_cases"].as_u64().unwrap() > 0);
    for broken in ["policy-too-large", "string-too-long"] {
        let bundle = format!("tests/fixtures/broken/{broken}/bundle");
        let text = verdict(&["check", &bundle]);
        let json = verdict(&["check", &bundle, "--format", "json"]);
        assert_eq!(code(&text), code(&json), "{broken}");
        let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
        let errors = report["errors"].as_array().unwrap();
        let text_errors = stdout(&text)
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count();
        assert_eq!(errors.len(), text_errors, "{broken}");
        for e in errors {
            let line = format!("error: {}", e["file"].as_str().unwrap());
            assert!(stdout(&text).contains(&line), "{broken}: {line}");
            assert!(
                stdout(&text).contains(e["message"].as_str().unwrap()),
                "{broken}"
            );
        }
    }
}

#[test]
fn test_reports_failures_as_json() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join(KMS), dir.path());
    fs::write(
        dir.path().join("tests/fails.json"),
        format!(
            r#"{{"name": "frank", "cases": [{{"principal": "arn:aws:iam::111122223333:user/frank", "action": "kms:Encrypt", "resource": "{KEY}", "expect": "ExplicitDeny"}}]}}"#
        ),
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let text = verdict(&["test", path]);
    let json = verdict(&["test", path, "--format", "json"]);
    assert_eq!(code(&text), 1);
    assert_eq!(code(&json), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(report["failed"], 1);
    assert!(report["passed"].as_u64().unwrap() > 0);
    let failure = &report["failures"][0];
    assert_eq!(failure["file"], "tests/fails.json");
    assert_eq!(failure["got"]["decision"], "Allow");
    assert!(stdout(&text).contains("FAIL tests/fails.json:"));
}

#[test]
fn eval_prints_text_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests.jsonl");
    fs::write(
        &requests,
        format!(
            "{{\"principal\": \"arn:aws:iam::111122223333:user/frank\", \"action\": \"kms:Encrypt\", \"resource\": \"{KEY}\"}}\n{{\"principal\": \"x\", \"action\": \"kms:Encrypt\", \"resource\": \"*\"}}\n"
        ),
    )
    .unwrap();
    let o = verdict(&[
        "eval",
        KMS,
        "--requests",
        requests.to_str().unwrap(),
        "--format",
        "text",
    ]);
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Allow by ["), "{out}");
    assert!(
        lines[0].contains("kms/encrypt-decrypt-specific-keys#0 (identity, Allow)"),
        "{out}"
    );
    assert!(lines[1].starts_with("error: line 2: principal: "), "{out}");
    // JSON stays the default.
    let o = verdict(&["eval", KMS, "--requests", requests.to_str().unwrap()]);
    let first: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["decision"], "Allow");
}

/// What a command's output must look like on one stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// Nothing.
    Empty,
    /// Some text.
    Text,
    /// One JSON document, or JSON lines.
    Json,
}

fn shape_holds(shape: Shape, text: &str) -> bool {
    match shape {
        Shape::Empty => text.trim().is_empty(),
        Shape::Text => {
            !text.trim().is_empty() && serde_json::from_str::<serde_json::Value>(text).is_err()
        }
        Shape::Json => {
            !text.trim().is_empty()
                && text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                || serde_json::from_str::<serde_json::Value>(text).is_ok()
        }
    }
}

/// The exit-status table of docs/api.md, row by row: every subcommand
/// that reads a bundle, on a good bundle, a broken one, a failing test and
/// a deny, in text and JSON, gives the documented status, its result on
/// stdout and its diagnostics on stderr.
#[test]
fn every_command_gives_the_documented_exit_status_and_streams() {
    let failing = tempfile::tempdir().unwrap();
    copy_dir(&root().join(KMS), failing.path());
    fs::write(
        failing.path().join("tests/fails.json"),
        format!(
            r#"{{"cases": [{{"principal": "arn:aws:iam::111122223333:user/frank", "action": "kms:Encrypt", "resource": "{KEY}", "expect": "ExplicitDeny"}}]}}"#
        ),
    )
    .unwrap();
    let failing = failing.path().to_str().unwrap().to_owned();
    let broken = "tests/fixtures/broken/bad-account-id/bundle";
    let warned = "tests/fixtures/warned/bad-date/bundle";
    let allow = [
        "--principal",
        "arn:aws:iam::111122223333:user/frank",
        "--action",
        "kms:Encrypt",
        "--resource",
        KEY,
    ];
    let deny = [
        "--principal",
        "arn:aws:iam::111122223333:user/nobody",
        "--action",
        "kms:Encrypt",
        "--resource",
        KEY,
    ];
    let invalid = [
        "--principal",
        "nobody",
        "--action",
        "kms:Encrypt",
        "--resource",
        KEY,
    ];
    let eval = |bundle: &str, request: &[&str], extra: &[&str]| -> Vec<String> {
        let mut args = vec!["eval".to_owned(), bundle.to_owned()];
        args.extend(request.iter().map(|s| (*s).to_owned()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let of = |args: &[&str]| -> Vec<String> { args.iter().map(|s| (*s).to_owned()).collect() };
    use Shape::{Empty, Json, Text};
    // (arguments, status, stdout, stderr)
    let rows: Vec<(Vec<String>, i32, Shape, Shape)> = vec![
        (of(&["check", KMS]), 0, Text, Empty),
        (of(&["check", KMS, "--format", "json"]), 0, Json, Empty),
        (of(&["check", broken]), 1, Text, Empty),
        (of(&["check", broken, "--format", "json"]), 1, Json, Empty),
        (of(&["check", &failing]), 0, Text, Empty),
        (of(&["check", warned]), 0, Text, Empty),
        (of(&["check", warned, "--strict"]), 1, Text, Empty),
        (
            of(&["check", warned, "--strict", "--format", "json"]),
            1,
            Json,
            Empty,
        ),
        (of(&["check", KMS, "--strict"]), 0, Text, Empty),
        (of(&["test", KMS]), 0, Text, Empty),
        (of(&["test", KMS, "--format", "json"]), 0, Json, Empty),
        (of(&["test", &failing]), 1, Text, Empty),
        (of(&["test", &failing, "--format", "json"]), 1, Json, Empty),
        (of(&["test", broken]), 2, Empty, Text),
        (of(&["test", broken, "--format", "json"]), 2, Empty, Text),
        (eval(KMS, &allow, &[]), 0, Json, Empty),
        (eval(KMS, &allow, &["--format", "text"]), 0, Text, Empty),
        (eval(KMS, &deny, &[]), 0, Json, Empty),
        (eval(KMS, &deny, &["--exit-code"]), 1, Json, Empty),
        (
            eval(KMS, &deny, &["--exit-code", "--format", "text"]),
            1,
            Text,
            Empty,
        ),
        (eval(KMS, &allow, &["--exit-code"]), 0, Json, Empty),
        (eval(KMS, &invalid, &[]), 1, Json, Empty),
        (eval(broken, &allow, &[]), 2, Empty, Text),
        (eval(broken, &allow, &["--format", "text"]), 2, Empty, Text),
        (of(&["check"]), 2, Empty, Text),
        (of(&["test", "--no-such-flag", KMS]), 2, Empty, Text),
        (
            of(&["eval", KMS, "--action", "kms:Encrypt"]),
            2,
            Empty,
            Text,
        ),
    ];
    let mut failures = Vec::new();
    for (args, status, out, err) in &rows {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = verdict(&argv);
        let (so, se) = (stdout(&o), stderr(&o));
        // A bundle's own warnings are diagnostics: they may go to stderr.
        let err_ok = *err != Empty || se.lines().all(|l| l.starts_with("warning: "));
        if code(&o) != *status
            || !shape_holds(*out, &so)
            || (*err != Empty && !shape_holds(*err, &se))
            || !err_ok
        {
            failures.push(format!(
                "verdict {}: status {} (want {status}), stdout {out:?}, stderr {err:?}\n--- stdout\n{so}\n--- stderr\n{se}",
                argv.join(" "),
                code(&o)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The typos of tests/fixtures/warned/typos, as `check --format json`
/// reports them: each with its code and the name probably meant; under
/// `--strict` the warnings become errors and the suggestion (a policy
/// attached nowhere) stays what it is.
#[test]
fn check_names_typos_with_codes_and_suggestions() {
    let bundle = root().join("tests/fixtures/warned/typos/bundle");
    let bundle = bundle.to_str().unwrap();
    let o = verdict(&["check", bundle, "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let found: Vec<(String, String, Option<String>)> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["severity"].as_str().unwrap().to_owned(),
                w["code"].as_str().unwrap().to_owned(),
                w["suggestion"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let want = |sev: &str, code: &str, s: Option<&str>| {
        (sev.to_owned(), code.to_owned(), s.map(str::to_owned))
    };
    for w in [
        want("warning", "W-UNKNOWN-ACTION", Some("kms:GetPublicKey")),
        want("warning", "W-UNKNOWN-SERVICE", Some("kms")),
        want("warning", "W-ACTION-MATCHES-NOTHING", None),
        want("warning", "W-UNKNOWN-CONDITION-KEY", Some("aws:username")),
        want(
            "warning",
            "W-UNKNOWN-CONDITION-KEY",
            Some("kms:CallerAccount"),
        ),
        want("suggestion", "W-UNATTACHED", None),
    ] {
        assert!(found.contains(&w), "{w:?} not in {found:?}");
    }
    assert_eq!(found.len(), 6, "{found:?}");

    let strict = verdict(&["check", bundle, "--format", "json", "--strict"]);
    assert_eq!(code(&strict), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&strict)).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 5);
    let left = report["warnings"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["severity"], "suggestion");

    let broken = root().join("tests/fixtures/broken/unknown-operator/bundle");
    let o = verdict(&["check", broken.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&o), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["errors"][0]["code"], "E-OPERATOR");
    assert_eq!(report["errors"][0]["suggestion"], "StringEquals");
}

/// One policy file with four wrong elements reports all four, each located,
/// and a misspelt element once (not again as a missing one).
#[test]
fn check_reports_every_wrong_element_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("policies")).unwrap();
    fs::write(dir.path().join("manifest.json"), r#"{"revision": "r1"}"#).unwrap();
    fs::write(
        dir.path().join("policies/p.json"),
        r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Actoin": "kms:Decrypt", "Resource": "*"},
  {"Effect": "Permit", "Action": "kms:Decrypt", "Resource": 5},
  {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*", "Condition": {"StringEqualz": {"aws:username": "a"}}}
], "Versoin": "x"}"#,
    )
    .unwrap();
    let o = verdict(&["check", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&o), 1);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let errors: Vec<(String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("/Statement/0/Actoin", "E-UNKNOWN-ELEMENT"),
        ("/Statement/1/Resource", "E-JSON"),
        ("/Statement/1/Effect", "E-EFFECT"),
        ("/Statement/2/Condition/StringEqualz", "E-OPERATOR"),
        ("/Versoin", "E-UNKNOWN-ELEMENT"),
    ]
    .iter()
    .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
    .collect();
    let mut sorted = errors.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted, "{errors:?}");
    for e in report["errors"].as_array().unwrap() {
        assert!(e["line"].is_u64() && e["column"].is_u64(), "{e}");
    }
}
