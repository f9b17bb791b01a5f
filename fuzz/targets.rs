//! The bodies of the fuzz targets, shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and by the test that replays the committed corpus
//! (`tests/fuzz_corpus.rs`). Each takes any bytes and must neither panic nor
//! hang; what it checks beyond that is said on each.

#![allow(dead_code, reason = "each fuzz target uses one of these functions")]

use std::sync::OnceLock;
use std::time::SystemTime;

use verdict::bundle::source::read_tar_gz_from;
use verdict::bundle::{LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::compile::statement::CPolicy;
use verdict::eval::{EvalOptions, RequestLimits, logic};
use verdict::policy::{PolicyKind, check_place, parse_document};

/// A policy document: parsed, checked for every place it can be attached,
/// and compiled when it is valid.
pub fn policy_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_document(text, &|_| Default::default()) else {
        return;
    };
    for kind in [
        PolicyKind::Identity,
        PolicyKind::Resource,
        PolicyKind::Session,
        PolicyKind::Boundary,
        PolicyKind::Scp,
        PolicyKind::Rcp,
    ] {
        let (errors, _) = check_place(&parsed.document, kind);
        if errors.is_empty() {
            let _ = CPolicy::compile("fuzz".into(), &parsed.document);
        }
    }
}

/// A `.tar.gz` bundle: read within the default limits, and loaded and
/// compiled when it reads without errors. The read must stay within the
/// file limit whatever the archive declares.
pub fn bundle_targz(data: &[u8]) {
    let limits = verdict::bundle::Limits {
        max_files: 1000,
        max_unpacked_bytes: 16 << 20,
        ..Default::default()
    };
    let raw = read_tar_gz_from(data, "fuzz.tar.gz", &limits);
    assert!(raw.files.len() <= limits.max_files);
    let opts = LoadOptions {
        limits,
        with_tests: true,
        ..Default::default()
    };
    if let Ok(loaded) = load_raw(raw, &opts) {
        let _ = Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1);
    }
}

/// The example bundle, compiled once.
fn example() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/bundles/kms");
        let root = if std::path::Path::new(root).exists() {
            std::path::PathBuf::from(root)
        } else {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bundles/kms"))
        };
        let loaded = verdict::bundle::load(&root, &LoadOptions::default()).expect("example bundle");
        Snapshot::compile(&loaded.bundle, &EvalOptions::default(), 1)
    })
}

/// An `Authorize` request as protobuf bytes: decoded, validated as the
/// server validates it, and decided on the example bundle within the
/// default matching budget, as the server decides it.
pub fn request_proto(data: &[u8]) {
    let Ok(request) = <verdict::proto::AuthorizeRequest as prost::Message>::decode(data) else {
        return;
    };
    let limits = RequestLimits::default();
    let Ok(request) = verdict::service::convert::request(request, &limits) else {
        return;
    };
    let _ = logic::evaluate_within(
        example(),
        &request,
        SystemTime::UNIX_EPOCH,
        limits.max_match_steps,
    );
}
