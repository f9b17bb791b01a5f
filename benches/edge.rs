//! The work of one `Authorize` call apart from HTTP/2, on the KMS example
//! bundle: decoding the protobuf request, the service handler (validation,
//! cache lookup or evaluation, the response message), and encoding the
//! response. The server's own per-call cost beside a Health/Check is this.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message as _;
use verdict::cache::CacheLimits;
use verdict::config::{self, FlagValues, Sources};
use verdict::proto::server::authorizer_server::Authorizer as _;
use verdict::proto::{AuthorizeRequest, AuthorizeResponse};
use verdict::reload::Reloader;
use verdict::service::AuthorizerService;
use verdict::service::stored::Cache;
use verdict::telemetry::Telemetry;

// The allocator the server runs with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn request() -> AuthorizeRequest {
    AuthorizeRequest {
        principal: "arn:aws:iam::111122223333:user/dave".into(),
        action: "kms:Encrypt".into(),
        resource: KEY.into(),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = config::from_sources(&Sources {
        flags: FlagValues::default(),
        env: &|_| None,
        file: None,
    })
    .unwrap();
    let reloader = Reloader::new(&config.reload, None).expect("a local source");
    rt.block_on(reloader.reload()).unwrap();
    let service = |entries: u64| {
        AuthorizerService::new(
            reloader.clone(),
            Arc::new(Cache::new(CacheLimits {
                max_entries: entries,
                ..config.cache
            })),
            config.service.request_limits.clone(),
            config.service.max_batch,
            Arc::new(Telemetry::disabled()),
        )
    };
    let cached = service(1000);
    let uncached = service(0);
    let wire = request().encode_to_vec();
    let response = rt
        .block_on(cached.authorize(tonic::Request::new(request())))
        .unwrap()
        .into_inner()
        .into_response()
        .unwrap();
    assert_eq!(response.decision(), verdict::proto::Decision::Allow);

    let mut g = c.benchmark_group("authorize-call");
    g.bench_function("decode-request", |b| {
        b.iter(|| AuthorizeRequest::decode(black_box(&wire[..])).unwrap());
    });
    g.bench_function("handler-cache-hit", |b| {
        b.iter_batched(
            || tonic::Request::new(request()),
            |r| rt.block_on(cached.authorize(r)).unwrap(),
            criterion::BatchSize::SmallInput,
        );
    });
    g.bench_function("handler-cache-off", |b| {
        b.iter_batched(
            || tonic::Request::new(request()),
            |r| rt.block_on(uncached.authorize(r)).unwrap(),
            criterion::BatchSize::SmallInput,
        );
    });
    let mut buf = Vec::with_capacity(1024);
    // A miss's response, built and encoded per call (a hit sends the bytes
    // its cache entry encoded on its first hit).
    g.bench_function("encode-response", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&response).encode(&mut buf).unwrap();
        });
    });
    g.bench_function("drop-response", |b| {
        b.iter_batched(
            || response.clone(),
            drop::<AuthorizeResponse>,
            criterion::BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
