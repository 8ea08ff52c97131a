#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Time per decision with a realistic config (docs/benchmarks.md reports it).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use policy_core::{Policy, Request};

struct Req {
    cookie: &'static [u8],
}

impl Request for Req {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        (name == "cookie" && !self.cookie.is_empty()).then(|| self.cookie.to_vec())
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        None
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        Some([0x42; 16])
    }
}

fn config(routes: usize) -> Policy {
    let mut list = Vec::new();
    for i in 0..routes {
        list.push(format!(
            r#"{{"name": "app-{i}", "hosts": ["app-{i}.example.com", "*.app-{i}.example.net"], "salt": "app-{i}-2026",
               "versions": [{{"name": "v1", "weight": 90}}, {{"name": "v2", "weight": 10}}],
               "key_chain": [{{"cookie": "session"}}, {{"header": "x-user-id"}}, {{"new_client_id": {{"cookie": "sc-id"}}}}],
               "override": {{"header": "x-canary-force", "allow": ["v2"], "secret_header": "x-canary-key", "secret": "0123456789abcdef0123"}}}}"#
        ));
    }
    Policy::from_json(format!(r#"{{"routes": [{}]}}"#, list.join(",")).as_bytes()).unwrap()
}

fn bench(c: &mut Criterion) {
    let cookie: &'static [u8] =
        b"_ga=GA1.2.1234567890.1700000000; theme=dark; session=8f14e45fceea167a5a36dedd4bea2543; consent=yes";
    for routes in [1usize, 100] {
        let policy = config(routes);
        let host = format!("app-{}.example.com", routes - 1);
        c.bench_function(&format!("decide/returning-client/{routes}-routes"), |b| {
            b.iter(|| {
                let route = policy.find_route(black_box(host.as_bytes()), b"").unwrap();
                black_box(route.decide(&mut Req { cookie }))
            })
        });
    }
    let policy = config(1);
    c.bench_function("decide/new-client/1-route", |b| {
        b.iter(|| {
            let route = policy.find_route(black_box(b"app-0.example.com"), b"").unwrap();
            black_box(route.decide(&mut Req { cookie: b"" }))
        })
    });
    let big: &'static [u8] = Box::leak(
        format!("{}; session=8f14e45fceea167a5a36dedd4bea2543", "x".repeat(4096))
            .into_bytes()
            .into_boxed_slice(),
    );
    c.bench_function("decide/4kb-cookie/1-route", |b| {
        b.iter(|| {
            let route = policy.find_route(black_box(b"app-0.example.com"), b"").unwrap();
            black_box(route.decide(&mut Req { cookie: big }))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
