//! The synthetic bundles the benchmarks use: they load, the compiled
//! evaluator agrees with the reference on them, and their Cedar translation
//! decides every request the same way verdict does, so that the verdict/Cedar
//! benchmark compares the same work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

#[path = "../benches/support/synth.rs"]
mod synth;

use std::str::FromStr;
use std::time::SystemTime;

use verdict::bundle::source::{RawBundle, RawFile};
use verdict::bundle::{LoadOptions, load_raw};
use verdict::compile::Snapshot;
use verdict::eval::{EvalOptions, Outcome, Request, RequestLimits, RequestParts, logic, reference};

#[test]
fn synthetic_bundles_agree_everywhere() {
    let s = synth::generate(7, 2_000, 3_000);
    assert!(s.statements > 1_000, "{} statements", s.statements);
    let raw = RawBundle {
        source: "synth".into(),
        files: s
            .files
            .iter()
            .map(|(p, t)| RawFile {
                path: p.clone(),
                bytes: t.clone().into_bytes(),
            })
            .collect(),
        diagnostics: Vec::new(),
    };
    let loaded = load_raw(raw, &LoadOptions::default()).unwrap_or_else(|e| {
        panic!(
            "{:?}",
            e.diagnostics()
                .iter()
                .take(5)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        )
    });
    let opts = EvalOptions::default();
    let snap = Snapshot::compile(&loaded.bundle, &opts, 1);

    let policies = cedar_policy::PolicySet::from_str(&s.cedar_policies).unwrap();
    let entities = cedar_policy::Entities::from_json_value(s.cedar_entities.clone(), None).unwrap();
    let authorizer = cedar_policy::Authorizer::new();
    let uid = |t: &str, id: &str| {
        cedar_policy::EntityUid::from_type_name_and_id(
            cedar_policy::EntityTypeName::from_str(t).unwrap(),
            cedar_policy::EntityId::new(id),
        )
    };

    let now = SystemTime::now();
    let (mut allows, mut denies) = (0, 0);
    for r in &s.requests {
        let req = Request::new(
            RequestParts {
                principal: r.principal.clone(),
                action: r.action.clone(),
                resource: r.resource.clone(),
                context: r
                    .context
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![v.clone()]))
                    .collect(),
                session_policy: None,
                explain: false,
            },
            &RequestLimits::default(),
        )
        .unwrap();
        let got = logic::evaluate(&snap, &req, now);
        let want = reference::evaluate(&loaded.bundle, &req, &opts, now);
        assert_eq!(got, want, "{r:?}");

        let cedar_req = cedar_policy::Request::new(
            uid("Principal", &r.cedar_principal),
            uid("Action", &r.action),
            uid("Resource", &r.resource),
            cedar_policy::Context::from_json_value(r.cedar_context.clone(), None).unwrap(),
            None,
        )
        .unwrap();
        let cedar = authorizer.is_authorized(&cedar_req, &policies, &entities);
        assert!(
            cedar.diagnostics().errors().next().is_none(),
            "{r:?}: {:?}",
            cedar.diagnostics()
        );
        let cedar_allows = cedar.decision() == cedar_policy::Decision::Allow;
        assert_eq!(
            got.outcome == Outcome::Allow,
            cedar_allows,
            "{r:?}: verdict {:?}",
            got.outcome
        );
        if cedar_allows {
            allows += 1;
        } else {
            denies += 1;
        }
    }
    // The requests exercise both outcomes substantially.
    assert!(
        allows > 300 && denies > 300,
        "{allows} allows, {denies} denies"
    );
}
