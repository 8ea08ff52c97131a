//! The whole per-request decision from raw request bytes, as the filter makes it.
//!
//! A policy (one of a few fixed, realistic ones, or fuzzed config bytes) picks
//! a route for a fuzzed authority and path, then decides for a request whose
//! headers, cookies, client address and random bytes all come from the input.
//! Each decision is checked against a reference model of docs/assignment.md §3 (and §6, the
//! cut-over, on a fixed policy that has one, at times around it)
//! written independently here: the same source, version and bucket, a
//! Set-Cookie only for a new, derived or refreshed id, free of CR/LF/NUL, and a chosen route whose
//! host and path prefix really match.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use policy_core::{
    bucket, cookie, identity_id, CutoverOutcome, Decision, KeySource, KeySpec, NoKey, Policy, Request, Route,
};

const POLICIES: &[&str] = &[
    r#"{"response_header": "x-served-by", "routes": [
      {"name": "shop", "hosts": ["shop.example.com", "*.shop.example.com"], "salt": "shop-2026",
       "versions": [{"name": "v1", "weight": 80}, {"name": "v2", "weight": 15}, {"name": "v3", "weight": 5}],
       "key_chain": [{"cookie": "session"}, {"header": "x-user-id"},
                     {"new_client_id": {"cookie": "sc-id", "domain": "shop.example.com", "max_age_seconds": 86400}}],
       "override": {"header": "x-canary-force", "allow": ["v2", "v3"],
                    "secret_header": "x-canary-secret", "secret": "0123456789abcdef0123"},
       "routing_token": {"value": "token-0123456789abcdef"}},
      {"name": "api", "hosts": ["shop.example.com"], "path_prefix": "/api", "salt": "api",
       "routing_header": "x-api-version",
       "versions": [{"name": "stable", "weight": 90.5}, {"name": "canary", "weight": 9.5}],
       "key_chain": [{"header": "x-tenant"}, "client_address"],
       "override": {"allow": ["stable", "canary"]}},
      {"name": "rest", "hosts": ["*"], "salt": "", "no_key": "weighted",
       "versions": [{"name": "v1", "weight": 0}, {"name": "v2", "weight": 100}],
       "key_chain": [{"cookie": "ID"}, {"cookie": "id"}]}
    ]}"#,
    r#"{"routes": [{"name": "app", "hosts": ["app.example.com"], "salt": "my-app",
       "versions": [{"name": "v1", "weight": 50}, {"name": "v2", "weight": 50}],
       "key_chain": [{"identity_header": "x-user-id"}, {"new_client_id": {"refresh_after_days": 7}}]}]}"#,
    r#"{"routes": [{"name": "edge", "hosts": ["*.example.com", "example.com"], "salt": "été",
       "versions": [{"name": "v1", "weight": 99.99}, {"name": "v2", "weight": 0.01}],
       "key_chain": ["client_address"], "no_key": "weighted"}]}"#,
    // A cut-over (start 1764820000, deadline two hours later) on a route whose canary has a slot.
    r#"{"routes": [{"name": "bg", "hosts": ["bg.example.com"], "salt": "bg",
       "versions": [{"name": "blue", "weight": 85}, {"name": "a", "weight": 5, "max_weight": 20},
                    {"name": "green", "weight": 10}],
       "key_chain": [{"header": "x-user-id"}, {"new_client_id": {"cookie": "sc-id"}}],
       "override": {"allow": ["blue"]},
       "cutover": {"to": "green", "start": 1764820000, "deadline": 1764827200, "idle_seconds": 600}}]}"#,
];

/// The index in [`POLICIES`] of the one with a cut-over.
const CUTOVER_POLICY: usize = 3;

const NAMES: &[&str] = &[
    "cookie",
    "x-canary-force",
    "x-canary-secret",
    "x-user-id",
    "x-tenant",
    "x-canary-version",
    "x-api-version",
];

const COOKIE_NAMES: &[&str] = &["session", "sc-id", "sticky-canary-id", "ID", "id", "Session"];

#[derive(Arbitrary, Debug)]
enum ConfigInput {
    Fixed(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: ConfigInput,
    authority: Vec<u8>,
    path: Vec<u8>,
    /// `name=value` pairs joined into a Cookie header with `separator` (a `;` most of the time).
    cookies: Vec<(u8, Vec<u8>)>,
    separator: u8,
    headers: Vec<(Name, Vec<u8>)>,
    address: Option<Vec<u8>>,
    random: Option<[u8; 16]>,
    today: Option<u32>,
    /// Seconds after 1764819000 (so around the fixed cut-over), or a raw time.
    now: Option<NowInput>,
}

#[derive(Arbitrary, Debug)]
enum NowInput {
    NearCutover(u16),
    Raw(u64),
}

/// The request as the host shows it: lookups ignore case, repeated headers are joined with `,`.
struct Fake {
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    address: Option<Vec<u8>>,
    random: Option<[u8; 16]>,
    today: Option<u32>,
    now: Option<u64>,
}

impl Fake {
    fn get(&self, name: &str) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                match &mut out {
                    Some(joined) => {
                        joined.push(b',');
                        joined.extend_from_slice(v);
                    }
                    None => out = Some(v.clone()),
                }
            }
        }
        out
    }
}

impl Request for Fake {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "asked for {name:?}");
        self.get(name)
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        self.address.clone()
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        self.random
    }
    fn today(&mut self) -> Option<u32> {
        self.today
    }
    fn now(&mut self) -> Option<u64> {
        self.now
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn without_port(address: &[u8]) -> &[u8] {
    if let Some(rest) = address.strip_prefix(b"[") {
        return rest.split(|&b| b == b']').next().unwrap_or(rest);
    }
    match address.iter().filter(|&&b| b == b':').count() {
        1 => address.split(|&b| b == b':').next().unwrap_or(address),
        _ => address,
    }
}

/// `ID.DAY` (32 lowercase hex, a dot, 1 to 9 digits), or `ID.DAY.ISSUED.SEEN` (the cut-over's
/// times, 1 to 12 digits each) -> (ID, DAY); anything else is a whole key.
fn split_stamp(value: &[u8]) -> (&[u8], Option<u32>) {
    let (key, day, _) = split_times(value);
    (key, day)
}

/// [`split_stamp`] with the cut-over's `(ISSUED, SEEN)` when the value carries them.
fn split_times(value: &[u8]) -> (&[u8], Option<u32>, Option<(u64, u64)>) {
    let is_id = |id: &[u8]| id.len() == 32 && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let digits = |part: &[u8], most: usize| (1..=most).contains(&part.len()) && part.iter().all(u8::is_ascii_digit);
    if let Some(dot) = value.iter().position(|&b| b == b'.') {
        let (id, rest) = (&value[..dot], &value[dot + 1..]);
        let parts: Vec<&[u8]> = rest.split(|&b| b == b'.').collect();
        let stamped = match parts.as_slice() {
            [day] => digits(day, 9),
            [day, issued, seen] => digits(day, 9) && digits(issued, 12) && digits(seen, 12),
            _ => false,
        };
        if is_id(id) && stamped {
            let number = |part: &[u8]| std::str::from_utf8(part).ok().and_then(|d| d.parse::<u64>().ok());
            let times = match parts.as_slice() {
                [_, issued, seen] => number(issued).zip(number(seen)),
                _ => None,
            };
            let day = number(parts[0]).and_then(|d| u32::try_from(d).ok());
            return (id, day, times);
        }
    }
    (value, None, None)
}

/// docs/assignment.md §6 on top of the weights' decision `base` (§3).
fn expected_with_cutover(route: &Route, request: &Fake, base: Decision) -> Decision {
    let (Some(cutover), Some(now)) = (route.cutover(), request.now) else {
        return base;
    };
    if base.source == KeySource::Override || now < cutover.start {
        return base;
    }
    if now >= cutover.deadline {
        return Decision {
            version: cutover.to,
            cutover: Some(CutoverOutcome::Done),
            ..base
        };
    }
    let Some(KeySpec::NewClientId(settings)) = route.key_chain().last() else {
        return base;
    };
    let today = request.today.or(u32::try_from(now / 86_400).ok());
    let cookies = request.get("cookie");
    let by_id = cookies
        .as_deref()
        .and_then(|h| cookie::find(h, settings.cookie.as_bytes()));
    let new = |set_cookie| Decision {
        version: cutover.to,
        cutover: Some(CutoverOutcome::New),
        set_cookie,
        ..base.clone()
    };
    let Some(value) = by_id else {
        // A cookie issued on this request starts its assignment now.
        let id = base
            .set_cookie
            .as_deref()
            .and_then(|c| c.split(';').next())
            .and_then(|c| c.split_once('='))
            .map(|(_, v)| v.split('.').next().unwrap_or(v).to_owned());
        return new(id.map(|id| settings.set_cookie_with_times(&id, today, Some((now, now)))));
    };
    let (key, day, times) = split_times(value);
    let issued_by_us = key.len() == 32 && key.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !issued_by_us {
        return new(None);
    }
    let id = std::str::from_utf8(key).unwrap();
    if let Some((issued, seen)) = times.filter(|(issued, _)| *issued >= cutover.start) {
        let due = match (today, day) {
            (Some(t), Some(d)) => d <= t && t - d >= settings.refresh_after_days,
            (Some(_), None) => true,
            (None, _) => false,
        };
        return new(due.then(|| settings.set_cookie_with_times(id, today, Some((issued, seen)))));
    }
    let away = match (times, day) {
        (Some((_, seen)), _) => now.saturating_sub(seen),
        (None, Some(d)) => now.saturating_sub((u64::from(d) + u64::from(settings.refresh_after_days)) * 86_400),
        (None, None) => 0,
    };
    if away >= cutover.idle_seconds {
        Decision {
            version: cutover.to,
            cutover: Some(CutoverOutcome::Moved),
            set_cookie: Some(settings.set_cookie_with_times(id, today, Some((now, now)))),
            ..base
        }
    } else {
        let issued = times.map_or(0, |(issued, _)| issued);
        Decision {
            cutover: Some(CutoverOutcome::Kept),
            set_cookie: Some(settings.set_cookie_with_times(id, today, Some((issued, now)))),
            ..base
        }
    }
}

fn hex(random: [u8; 16]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

fn keyed(route: &Route, source: KeySource, key: &[u8]) -> Decision {
    let b = bucket(route.salt(), key);
    Decision {
        version: route.version_for_bucket(b),
        source,
        bucket: Some(b),
        set_cookie: None,
        cutover: None,
    }
}

/// docs/assignment.md §3, step by step.
fn expected(route: &Route, request: &Fake) -> Decision {
    if let Some(rule) = route.override_rule() {
        if let Some(asked) = request.get(&rule.header) {
            let asked = trim(&asked);
            let allowed = rule
                .allow
                .iter()
                .copied()
                .find(|&i| route.versions()[i].name().as_bytes() == asked);
            let proven = match &rule.secret {
                None => true,
                Some(secret) => request
                    .get(&secret.header)
                    .is_some_and(|given| trim(&given) == secret.value.as_slice()),
            };
            if let (Some(version), true) = (allowed, proven) {
                return Decision {
                    version,
                    source: KeySource::Override,
                    bucket: None,
                    set_cookie: None,
                    cutover: None,
                };
            }
        }
    }
    let cookies = request.get("cookie");
    let find = |name: &str| cookies.as_deref().and_then(|h| cookie::find(h, name.as_bytes()));
    let settings = match route.key_chain().last() {
        Some(KeySpec::NewClientId(settings)) => Some(settings),
        _ => None,
    };
    // The client-id cookie first, whatever comes before it in the chain.
    if let Some(value) = settings.and_then(|s| find(&s.cookie)) {
        let (key, stamp) = split_stamp(value);
        let mut decision = keyed(route, KeySource::Cookie, key);
        let issued = key.len() == 32 && key.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if let (true, Some(today), Some(settings)) = (issued, request.today, settings) {
            let old = match stamp {
                None => true,
                Some(day) => day <= today && today - day >= settings.refresh_after_days,
            };
            if old {
                let id = std::str::from_utf8(key).unwrap();
                decision.set_cookie = Some(settings.set_cookie(id, Some(today)));
            }
        }
        return decision;
    }
    for spec in route.key_chain() {
        match spec {
            KeySpec::Cookie(name) => {
                if let Some(value) = find(name) {
                    return keyed(route, KeySource::Cookie, value);
                }
            }
            KeySpec::Header(name) => {
                if let Some(value) = request.get(name) {
                    if !trim(&value).is_empty() {
                        return keyed(route, KeySource::Header, trim(&value));
                    }
                }
            }
            KeySpec::IdentityHeader(name) => {
                if let Some(value) = request.get(name) {
                    if !trim(&value).is_empty() {
                        let id = identity_id(route.salt(), trim(&value));
                        let mut decision = keyed(route, KeySource::Identity, id.as_bytes());
                        decision.set_cookie = settings.map(|s| s.set_cookie(&id, request.today));
                        return decision;
                    }
                }
            }
            KeySpec::NewClientId(settings) => {
                if let Some(random) = request.random {
                    let id = hex(random);
                    let mut decision = keyed(route, KeySource::NewId, id.as_bytes());
                    decision.set_cookie = Some(settings.set_cookie(&id, request.today));
                    return decision;
                }
            }
            KeySpec::ClientAddress => {
                if let Some(address) = &request.address {
                    let key = without_port(address);
                    if !key.is_empty() {
                        return keyed(route, KeySource::Address, key);
                    }
                }
            }
        }
    }
    match (route.no_key(), request.random) {
        (NoKey::Weighted, Some(random)) => {
            let mut first = [0u8; 8];
            first.copy_from_slice(&random[..8]);
            let b = (u64::from_be_bytes(first) % 10_000) as u16;
            Decision {
                version: route.version_for_bucket(b),
                source: KeySource::None,
                bucket: Some(b),
                set_cookie: None,
                cutover: None,
            }
        }
        _ => Decision {
            version: 0,
            source: KeySource::None,
            bucket: None,
            set_cookie: None,
            cutover: None,
        },
    }
}

/// The host part of an authority as route matching sees it.
fn host_of(authority: &[u8]) -> Vec<u8> {
    let host = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&b| b == b']') {
            Some(i) => &authority[..=i],
            None => authority,
        }
    } else {
        authority.split(|&b| b == b':').next().unwrap_or(authority)
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    host.to_ascii_lowercase()
}

fn check_route(policy: &Policy, route: &Route, authority: &[u8], path: &[u8]) {
    let host = host_of(authority);
    let host_matches = route.hosts().iter().any(|h| {
        h == "*"
            || h.as_bytes() == host.as_slice()
            || h.strip_prefix('*')
                .is_some_and(|suffix| host.ends_with(suffix.as_bytes()))
    });
    assert!(
        host_matches,
        "route {:?} chosen for host {:?}",
        route.name(),
        String::from_utf8_lossy(&host)
    );
    if let Some(prefix) = route.path_prefix() {
        let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
        assert!(path[..end].starts_with(prefix.as_bytes()));
    }
    assert!(policy.routing_headers().iter().any(|h| h == route.routing_header()));
}

/// The fixed policies, parsed once (parsing is the config target's job).
fn fixed() -> &'static [Policy] {
    static PARSED: OnceLock<Vec<Policy>> = OnceLock::new();
    PARSED.get_or_init(|| {
        POLICIES
            .iter()
            .map(|json| match Policy::from_json(json.as_bytes()) {
                Ok(policy) => policy,
                Err(errors) => panic!("fixed policy refused: {errors}"),
            })
            .collect()
    })
}

fuzz_target!(|input: Input| {
    let parsed;
    let policy = match &input.config {
        ConfigInput::Fixed(i) => &fixed()[usize::from(*i) % POLICIES.len()],
        ConfigInput::Raw(bytes) => {
            parsed = Policy::from_json(bytes);
            match &parsed {
                Ok(policy) => policy,
                Err(_) => return,
            }
        }
    };

    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if !input.cookies.is_empty() {
        let mut header = Vec::new();
        for (i, (name, value)) in input.cookies.iter().enumerate() {
            if i > 0 {
                header.push(if input.separator < 200 { b';' } else { input.separator });
                if input.separator.is_multiple_of(2) {
                    header.push(b' ');
                }
            }
            header.extend_from_slice(COOKIE_NAMES[usize::from(*name) % COOKIE_NAMES.len()].as_bytes());
            header.push(b'=');
            header.extend_from_slice(value);
        }
        headers.push((b"cookie".to_vec(), header));
    }
    for (name, value) in &input.headers {
        let name = match name {
            Name::Known(i) => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            Name::Other(s) => s.as_bytes().to_vec(),
        };
        headers.push((name, value.clone()));
    }
    let mut request = Fake {
        headers,
        address: input.address.clone(),
        random: input.random,
        today: input.today,
        now: input.now.as_ref().map(|n| match n {
            NowInput::NearCutover(s) => 1_764_819_000 + u64::from(*s) * 2,
            NowInput::Raw(t) => *t,
        }),
    };

    let path = if policy.needs_path() {
        input.path.as_slice()
    } else {
        &[][..]
    };
    // The cut-over policy has one host: an authority that finds no route there is replaced by it,
    // so the fuzzer spends its time on the decision rather than on finding the host.
    let authority = match &input.config {
        ConfigInput::Fixed(i) if usize::from(*i) % POLICIES.len() == CUTOVER_POLICY => {
            match policy.find_route_index(&input.authority, path) {
                Some(_) => input.authority.clone(),
                None => b"bg.example.com".to_vec(),
            }
        }
        _ => input.authority.clone(),
    };
    let Some(index) = policy.find_route_index(&authority, path) else {
        assert!(
            policy
                .routes()
                .iter()
                .all(|r| !(r.hosts().iter().any(|h| h == "*") && r.path_prefix().is_none())),
            "a catch-all route exists but no route was found"
        );
        return;
    };
    let route = &policy.routes()[index];
    check_route(policy, route, &authority, path);

    let decision = route.decide(&mut request);
    assert!(decision.version < route.versions().len());
    if let Some(b) = decision.bucket {
        assert!(b < 10_000);
        if decision.cutover.is_none() {
            assert_eq!(decision.version, route.version_for_bucket(b));
        }
    }
    if let Some(set_cookie) = &decision.set_cookie {
        assert!(matches!(
            decision.source,
            KeySource::NewId | KeySource::Identity | KeySource::Cookie
        ));
        assert!(
            !set_cookie.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
            "Set-Cookie {set_cookie:?}"
        );
    }
    let base = expected(route, &request);
    assert_eq!(decision, expected_with_cutover(route, &request, base));
});
