//! `sticky-canary explain`: for one user's request, which key decides and why, its bucket, the
//! version at the config's weights, and the weight at which the user would move.
//!
//! It runs the filter's own decision ([`Route::decide`], policy-core) on the request described by
//! the flags, so the answer is the gateway's, not a re-implementation of it.

use std::fmt::Write as _;

use policy_core::{cookie, day_of, format_percent, identity_id, ClientId, Decision, KeySource, KeySpec, Route};

/// The request `explain` is asked about.
#[derive(Debug, Default, Clone)]
pub struct Described {
    /// `(lowercased name, value)`, in the order given; the first of a name is what the filter reads.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The downstream address (`ip`, `ip:port` or `[v6]:port`).
    pub address: Option<Vec<u8>>,
    /// Today, days since 1970-01-01 UTC (for the id cookie's refresh); `None` leaves it out.
    pub today: Option<u32>,
    /// Now, Unix seconds (for a route's cut-over); `None` leaves the cut-over out.
    pub now: Option<u64>,
}

impl Described {
    /// Parses `--header` arguments (`name: value`) and the `--cookie` header value.
    pub fn new(headers: &[String], cookie_header: Option<&str>, address: Option<&str>) -> Result<Described, String> {
        let mut described = Described::default();
        if let Some(value) = cookie_header {
            described.headers.push(("cookie".to_owned(), value.as_bytes().to_vec()));
        }
        for header in headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(format!("--header {header:?}: give NAME: VALUE"));
            };
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("--header {header:?}: {name:?} is not a header name"));
            }
            described
                .headers
                .push((name.to_ascii_lowercase(), value.trim().as_bytes().to_vec()));
        }
        described.address = address.map(|a| a.as_bytes().to_vec());
        Ok(described)
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// [`Described`] as policy-core sees a request. `random` gives a fixed draw and records that it
/// was asked: a request that reaches it has no key, and `explain` reports the odds instead.
struct AsRequest<'a> {
    described: &'a Described,
    drew: bool,
}

impl policy_core::Request for AsRequest<'_> {
    type Header = Vec<u8>;
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.described.first(name).map(<[u8]>::to_vec)
    }
    fn client_address(&mut self) -> Option<Vec<u8>> {
        self.described.address.clone()
    }
    fn random(&mut self) -> Option<[u8; 16]> {
        self.drew = true;
        Some([0; 16])
    }
    fn today(&mut self) -> Option<u32> {
        self.described.today
    }
    fn now(&mut self) -> Option<u64> {
        self.described.now
    }
}

/// Now as Unix seconds, from the system clock.
pub fn now() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Today as days since 1970-01-01 UTC, from the system clock.
pub fn today() -> Option<u32> {
    now().map(day_of)
}

/// The explanation, as lines of text. With `canary_weight` (a route whose weights Flagger or Argo
/// Rollouts set, [`crate::assign::check_tool_weight`]), versions are what Envoy's weighted
/// clusters give at that canary weight.
pub fn explain(route: &Route, described: &Described, canary_weight: Option<u8>) -> String {
    let mut request = AsRequest { described, drew: false };
    let decision = route.decide(&mut request);
    let mut out = String::new();
    let hosts = route.hosts().join(", ");
    let _ = writeln!(out, "route:      {} ({hosts})", route.name());
    let _ = writeln!(out, "weights:    {}", weights(route, canary_weight));
    match decision.source {
        KeySource::Override => {
            let header = route.override_rule().map_or("", |o| o.header.as_str());
            let _ = writeln!(
                out,
                "key:        none: the tester override {header} decides (no bucket)"
            );
            let _ = writeln!(out, "version:    {}", name(route, decision.version));
            let _ = writeln!(
                out,
                "moves:      never by weight; without the override header, the key chain decides"
            );
        }
        KeySource::NewId | KeySource::None if request.drew => new_client(route, &decision, canary_weight, &mut out),
        KeySource::None => {
            let _ = writeln!(out, "key:        none found (chain: {})", chain(route));
            let _ = writeln!(out, "version:    {} (no_key: stable)", name(route, 0));
            let _ = writeln!(
                out,
                "moves:      never by weight: a request without a key is served stable"
            );
        }
        _ => keyed(route, described, &decision, canary_weight, &mut out),
    }
    if let (Some(outcome), Some(cutover)) = (decision.cutover, route.cutover()) {
        let to = name(route, cutover.to);
        let why = match outcome {
            policy_core::CutoverOutcome::New => format!("new to the route since the cut-over started: on {to}"),
            policy_core::CutoverOutcome::Kept => format!(
                "had a version before the cut-over and was away less than {} s: kept, this response records now as last seen",
                cutover.idle_seconds
            ),
            policy_core::CutoverOutcome::Moved => format!(
                "had a version before the cut-over and was away {} s or more: moved to {to}, new from now on",
                cutover.idle_seconds
            ),
            policy_core::CutoverOutcome::Done => format!("the deadline has passed: everyone is on {to}"),
        };
        let _ = writeln!(out, "cutover:    {}: {why} (docs/assignment.md §6)", outcome.as_str());
    }
    if let Some(set_cookie) = decision.set_cookie.as_deref().filter(|_| !request.drew) {
        let _ = writeln!(out, "set-cookie: {set_cookie}");
    }
    out
}

/// The route's versions and weights: `v1 90%, v2 10%`.
fn weights(route: &Route, canary_weight: Option<u8>) -> String {
    if let (Some(weight), [stable, canary]) = (canary_weight, route.versions()) {
        return format!(
            "{} {}%, {} {weight}% (set by the tool; position header {})",
            stable.name(),
            100 - u16::from(weight),
            canary.name(),
            route.position_header().unwrap_or_default()
        );
    }
    route
        .versions()
        .iter()
        .map(|v| format!("{} {}%", v.name(), format_percent(u32::from(v.weight_basis_points()))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn name(route: &Route, version: usize) -> String {
    let Some(v) = route.versions().get(version) else {
        return format!("#{version}");
    };
    if version == 0 {
        format!("{} (stable)", v.name())
    } else {
        format!("{} (canary)", v.name())
    }
}

fn chain(route: &Route) -> String {
    let mut links: Vec<String> = route.key_chain().iter().map(link).collect();
    if links.is_empty() {
        links.push("empty".to_owned());
    }
    links.join(" → ")
}

fn link(spec: &KeySpec) -> String {
    match spec {
        KeySpec::Cookie(name) => format!("cookie {name}"),
        KeySpec::Header(name) => format!("header {name}"),
        KeySpec::IdentityHeader(name) => format!("identity header {name}"),
        KeySpec::NewClientId(settings) => format!("new client id (cookie {})", settings.cookie),
        KeySpec::ClientAddress => "client address".to_owned(),
    }
}

/// A request that reached the new-id link or the weighted no-key rule: the version is a draw.
fn new_client(route: &Route, decision: &Decision, canary_weight: Option<u8>, out: &mut String) {
    let canary_odds = match canary_weight {
        Some(w) => format!("{}: {w}%", name(route, 1)),
        None => route
            .versions()
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| {
                format!(
                    "{}: {}%",
                    name(route, i),
                    format_percent(u32::from(v.weight_basis_points()))
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    if decision.source == KeySource::NewId {
        let cookie = route.client_id().map_or("", |c| c.cookie.as_str());
        let _ = writeln!(
            out,
            "key:        none found: a new random id is issued as cookie {cookie} (Set-Cookie on this response)"
        );
        let _ = writeln!(
            out,
            "version:    a draw at these weights ({canary_odds}); then sticky on that id"
        );
    } else {
        let _ = writeln!(out, "key:        none found (chain: {})", chain(route));
        let _ = writeln!(
            out,
            "version:    a new draw on every request (no_key: weighted; not sticky): {canary_odds}"
        );
    }
    let _ = writeln!(out, "moves:      run explain again with the id the response sets");
}

/// Which link gave the key, its bytes as hashed, and the bucket: found again by hashing each
/// candidate the request holds and keeping the first that gives the decision's source and bucket.
fn found_key(route: &Route, described: &Described, decision: &Decision) -> (String, Vec<u8>) {
    let cookies = described.first("cookie").unwrap_or_default();
    let mut candidates: Vec<(KeySource, String, Vec<u8>)> = Vec::new();
    if let Some(settings) = route.client_id() {
        if let Some(value) = cookie::find(cookies, settings.cookie.as_bytes()) {
            let id = ClientId::parse(value);
            let stamp = if id.key.len() < value.len() {
                format!(
                    ", stamped day {}",
                    String::from_utf8_lossy(value.get(id.key.len() + 1..).unwrap_or_default())
                )
            } else {
                String::new()
            };
            let what = format!(
                "the client-id cookie {} (decides ahead of the chain{stamp})",
                settings.cookie
            );
            candidates.push((KeySource::Cookie, what, id.key.to_vec()));
        }
    }
    for spec in route.key_chain() {
        match spec {
            KeySpec::Cookie(name) => {
                if let Some(value) = cookie::find(cookies, name.as_bytes()) {
                    candidates.push((KeySource::Cookie, format!("cookie {name}"), value.to_vec()));
                }
            }
            KeySpec::Header(name) => {
                if let Some(value) = described.first(name) {
                    candidates.push((KeySource::Header, format!("header {name}"), value.to_vec()));
                }
            }
            KeySpec::IdentityHeader(name) => {
                if let Some(value) = described.first(name) {
                    let id = identity_id(route.salt(), value.trim_ascii());
                    let what = format!(
                        "identity header {name} = {:?}, hashed as its identity id",
                        String::from_utf8_lossy(value)
                    );
                    candidates.push((KeySource::Identity, what, id.into_bytes()));
                }
            }
            KeySpec::ClientAddress => {
                if let Some(address) = &described.address {
                    candidates.push((KeySource::Address, "client address".to_owned(), address.clone()));
                }
            }
            KeySpec::NewClientId(_) => {}
        }
    }
    candidates
        .into_iter()
        .find(|(source, _, key)| {
            *source == decision.source && route.assign(key).0 == decision.bucket.unwrap_or(u16::MAX)
        })
        .map(|(_, what, key)| (what, key))
        .unwrap_or_else(|| (decision.source.as_str().to_owned(), Vec::new()))
}

fn keyed(route: &Route, described: &Described, decision: &Decision, canary_weight: Option<u8>, out: &mut String) {
    let (what, key) = found_key(route, described, decision);
    let bucket = decision.bucket.unwrap_or_default();
    let _ = writeln!(out, "key:        {what}: {:?}", String::from_utf8_lossy(&key));
    let _ = writeln!(out, "bucket:     {bucket} of 0..9999");
    match canary_weight {
        Some(weight) => {
            let version = route.version_at_tool_weight(bucket, weight);
            let _ = writeln!(out, "version:    {}", name(route, version));
            // Canary exactly when bucket < 100 × weight (docs/assignment.md §5).
            let threshold = bucket / 100 + 1;
            let _ = if version == 0 {
                writeln!(
                    out,
                    "moves:      to {} when the tool sets its weight to {threshold}% or more",
                    name(route, 1)
                )
            } else {
                writeln!(
                    out,
                    "moves:      to {} when the tool sets the canary's weight to {}% or less",
                    name(route, 0),
                    threshold - 1
                )
            };
        }
        None => {
            let version = decision.version;
            let _ = writeln!(out, "version:    {}", name(route, version));
            let _ = writeln!(out, "moves:      {}", moves(route, bucket, version));
        }
    }
}

/// At which weight the user moves, the other weights unchanged. A stable user moves when the
/// canary whose slot holds their bucket grows to it (the last canary's slot, when it declares no
/// `max_weight`, grows up to 100%); a canary user moves when their canary's range shrinks below
/// it, or when an earlier canary without `max_weight` changes weight (its slot is its weight).
fn moves(route: &Route, bucket: u16, version: usize) -> String {
    let versions = route.versions();
    let count = versions.len();
    if version == 0 {
        if count < 2 {
            return "never: the route has one version".to_owned();
        }
        let slot = versions.iter().enumerate().skip(1).find(|(i, v)| {
            let (start, _) = v.buckets();
            let slot_end = match v.max_weight_basis_points() {
                Some(max) => start.saturating_add(max),
                None if i + 1 == count => 10_000,
                None => start.saturating_add(v.weight_basis_points()),
            };
            bucket >= start && bucket < slot_end
        });
        return match slot {
            Some((i, canary)) => {
                let (start, _) = canary.buckets();
                format!(
                    "to {} when {}'s weight reaches {}% (the other canaries' weights unchanged)",
                    name(route, i),
                    canary.name(),
                    format_percent(u32::from(bucket.saturating_add(1).saturating_sub(start)))
                )
            }
            None => "never by a weight change: the bucket is past every canary's slot (max_weight)".to_owned(),
        };
    }
    let Some(v) = versions.get(version) else {
        return String::new();
    };
    let (start, _) = v.buckets();
    let at = format_percent(u32::from(bucket.saturating_sub(start)));
    let shifted_by_earlier = versions
        .iter()
        .take(version)
        .skip(1)
        .any(|earlier| earlier.max_weight_basis_points().is_none());
    if shifted_by_earlier {
        format!(
            "off {} when its weight falls to {at}% or less, or when an earlier canary without max_weight changes weight (it shifts the later slots)",
            v.name()
        )
    } else {
        format!(
            "to {} when {}'s weight falls to {at}% or less",
            name(route, 0),
            v.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::Policy;

    fn route(json: &str) -> Route {
        let policy = Policy::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        policy.routes()[0].clone()
    }

    const SHOP: &str = r#"{"routes":[{"name":"shop","hosts":["shop.example.com"],"salt":"s1",
        "key_chain":[{"cookie":"session"},{"new_client_id":{}}],
        "versions":[{"name":"v1","weight":70},{"name":"v2","weight":30}]}]}"#;

    #[test]
    fn a_session_key_is_found_and_its_move_weight_is_where_its_bucket_enters_the_canary_range() {
        let route = route(SHOP);
        for key in ["alice", "bob", "carol", "dave", "erin"] {
            let described = Described::new(&[], Some(&format!("other=1; session={key}")), None).unwrap();
            let text = explain(&route, &described, None);
            let (bucket, version) = route.assign(key.as_bytes());
            assert!(
                text.contains(&format!("key:        cookie session: \"{key}\"")),
                "{text}"
            );
            assert!(text.contains(&format!("bucket:     {bucket} of")), "{text}");
            // The move weight is exactly where version_for_bucket changes its answer.
            let line = text.lines().find(|l| l.starts_with("moves:")).unwrap();
            let percent: f64 = line
                .split_whitespace()
                .find(|w| w.ends_with('%'))
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap();
            let bp = (percent * 100.0).round() as u16;
            if version == 0 {
                assert!(bucket >= 3000 && bp == bucket + 1, "{text}");
                assert!(text.contains("version:    v1 (stable)"), "{text}");
            } else {
                assert!(bucket < 3000 && bp == bucket, "{text}");
                assert!(text.contains("version:    v2 (canary)"), "{text}");
            }
        }
    }

    #[test]
    fn a_cutover_says_where_it_put_the_user() {
        let route = route(
            r#"{"routes":[{"name":"shop","hosts":["shop.example.com"],"salt":"s1",
            "key_chain":[{"new_client_id":{}}],
            "versions":[{"name":"blue","weight":100},{"name":"green","weight":0}],
            "cutover":{"to":"green","start":1000000,"deadline":2000000,"idle_seconds":600}}]}"#,
        );
        let id = "0123456789abcdef0123456789abcdef";
        let mut described = Described::new(&[], Some(&format!("sticky-canary-id={id}.11.0.1000100")), None).unwrap();
        described.now = Some(1_000_200);
        let text = explain(&route, &described, None);
        assert!(text.contains("version:    blue"), "{text}");
        assert!(
            text.contains("cutover:    kept: had a version before the cut-over"),
            "{text}"
        );
        described.now = Some(1_000_700);
        let text = explain(&route, &described, None);
        assert!(text.contains("version:    green"), "{text}");
        assert!(text.contains("cutover:    moved:"), "{text}");
        described.now = None;
        let text = explain(&route, &described, None);
        assert!(
            !text.contains("cutover:"),
            "without a clock the cut-over is left out: {text}"
        );
    }

    #[test]
    fn the_id_cookie_decides_ahead_of_the_session_and_its_stamp_is_not_hashed() {
        let route = route(SHOP);
        let id = "0123456789abcdef0123456789abcdef";
        let described =
            Described::new(&[], Some(&format!("session=alice; sticky-canary-id={id}.20400")), None).unwrap();
        let text = explain(&route, &described, None);
        assert!(
            text.contains("the client-id cookie sticky-canary-id (decides ahead of the chain, stamped day 20400)"),
            "{text}"
        );
        assert!(
            text.contains(&format!("bucket:     {} of", route.assign(id.as_bytes()).0)),
            "{text}"
        );
    }

    #[test]
    fn a_new_client_gets_the_odds_not_a_bucket() {
        let route = route(SHOP);
        let text = explain(&route, &Described::default(), None);
        assert!(
            text.contains("a new random id is issued as cookie sticky-canary-id"),
            "{text}"
        );
        assert!(text.contains("v2 (canary): 30%"), "{text}");
        assert!(!text.contains("bucket:"), "{text}");
    }

    fn three_versions(v2: u32, v3: u32) -> Route {
        let weight = |bp: u32| format_percent(bp);
        route(&format!(
            r#"{{"routes":[{{"name":"shop","hosts":["shop.example.com"],"salt":"s3",
            "key_chain":[{{"header":"x-user"}}],
            "versions":[{{"name":"v1","weight":{}}},{{"name":"v2","weight":{}}},{{"name":"v3","weight":{}}}]}}]}}"#,
            weight(10_000 - v2 - v3),
            weight(v2),
            weight(v3)
        ))
    }

    /// The weight in a `moves:` line, in basis points.
    fn move_weight(text: &str) -> u32 {
        let line = text.lines().find(|l| l.starts_with("moves:")).unwrap_or_default();
        let word = line.split_whitespace().find(|w| w.ends_with('%')).unwrap_or_default();
        policy_core::parse_percent(word.trim_end_matches('%'))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .into()
    }

    #[test]
    fn the_move_weight_is_the_first_weight_at_which_the_version_changes() {
        // v2 fixed at 10%, v3 (the one a ramp grows) at 25%: users of v3 and of stable.
        let route = three_versions(1000, 2500);
        let mut seen = [0; 3];
        for n in 0..300 {
            let user = format!("user-{n}");
            let described = Described::new(&[format!("x-user: {user}")], None, None).unwrap();
            let text = explain(&route, &described, None);
            let (bucket, version) = route.assign(user.as_bytes());
            seen[version] += 1;
            assert!(
                text.contains(&format!("key:        header x-user: \"{user}\"")),
                "{text}"
            );
            assert!(text.contains(&format!("bucket:     {bucket} of")), "{text}");
            let at = move_weight(&text);
            match version {
                // Stable: still stable at v3 = at - 0.01%, on v3 at `at`.
                0 => {
                    assert_eq!(three_versions(1000, at - 1).version_for_bucket(bucket), 0, "{text}");
                    assert_eq!(three_versions(1000, at).version_for_bucket(bucket), 2, "{text}");
                }
                // v3: still on it at at + 0.01%, stable at `at`.
                2 => {
                    assert_eq!(three_versions(1000, at + 1).version_for_bucket(bucket), 2, "{text}");
                    assert_eq!(three_versions(1000, at).version_for_bucket(bucket), 0, "{text}");
                }
                // v2: still on it at at + 0.01%, off it at `at` (v3 fixed).
                _ => {
                    assert_eq!(three_versions(at + 1, 2500).version_for_bucket(bucket), 1, "{text}");
                    assert_ne!(three_versions(at, 2500).version_for_bucket(bucket), 1, "{text}");
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 10), "every version seen: {seen:?}");
    }

    /// v2 with `max_weight` 30 % at `v2`, v3 at `v3` (basis points).
    fn arms(v2: u32, v3: u32) -> Route {
        route(&format!(
            r#"{{"routes":[{{"name":"shop","hosts":["shop.example.com"],"salt":"s3",
            "key_chain":[{{"header":"x-user"}}],
            "versions":[{{"name":"v1","weight":{}}},{{"name":"v2","weight":{},"max_weight":30}},{{"name":"v3","weight":{}}}]}}]}}"#,
            format_percent(10_000 - v2 - v3),
            format_percent(v2),
            format_percent(v3)
        ))
    }

    #[test]
    fn with_a_max_weight_the_move_weight_is_that_of_the_arm_whose_slot_holds_the_bucket() {
        // v2 at 10 % of a 30 % slot, v3 at 25 % after it: a stable user in v2's slot moves to v2.
        let route = arms(1000, 2500);
        let mut in_slot = 0;
        for n in 0..300 {
            let user = format!("user-{n}");
            let described = Described::new(&[format!("x-user: {user}")], None, None).unwrap();
            let text = explain(&route, &described, None);
            let (bucket, version) = route.assign(user.as_bytes());
            let at = move_weight_or_never(&text);
            match (version, at) {
                (0, Some(at)) if bucket < 3000 => {
                    in_slot += 1;
                    assert!(text.contains("to v2 (canary) when v2's weight reaches"), "{text}");
                    assert_eq!(arms(at - 1, 2500).version_for_bucket(bucket), 0, "{text}");
                    assert_eq!(arms(at, 2500).version_for_bucket(bucket), 1, "{text}");
                }
                (0, Some(at)) => {
                    assert_eq!(arms(1000, at - 1).version_for_bucket(bucket), 0, "{text}");
                    assert_eq!(arms(1000, at).version_for_bucket(bucket), 2, "{text}");
                }
                // v3 starts after v2's slot, so v2's weight never moves its users.
                (2, Some(_)) => assert!(text.contains("to v1 (stable) when v3's weight falls to"), "{text}"),
                (1, Some(_)) => assert!(text.contains("to v1 (stable) when v2's weight falls to"), "{text}"),
                other => panic!("{other:?}: {text}"),
            }
        }
        assert!(in_slot > 10, "stable users in v2's slot: {in_slot}");
    }

    fn move_weight_or_never(text: &str) -> Option<u32> {
        let line = text.lines().find(|l| l.starts_with("moves:"))?;
        line.split_whitespace()
            .any(|w| w.ends_with('%'))
            .then(|| move_weight(text))
    }

    #[test]
    fn identity_override_address_and_no_key_are_each_reported() {
        let route = route(
            r#"{"routes":[{"name":"shop","hosts":["shop.example.com"],"salt":"s1",
            "key_chain":[{"identity_header":"x-user-id"},"client_address"],
            "override":{"header":"x-canary-force","allow":["v2"]},
            "versions":[{"name":"v1","weight":50},{"name":"v2","weight":50}]}]}"#,
        );
        let identity = Described::new(&["X-User-Id:  u-42 ".to_owned()], None, None).unwrap();
        let text = explain(&route, &identity, None);
        let id = identity_id(b"s1", b"u-42");
        assert!(text.contains(&format!("hashed as its identity id: \"{id}\"")), "{text}");
        assert!(
            text.contains(&format!("bucket:     {} of", route.assign(id.as_bytes()).0)),
            "{text}"
        );

        let address = Described::new(&[], None, Some("192.0.2.7:5555")).unwrap();
        let text = explain(&route, &address, None);
        assert!(
            text.contains(&format!("bucket:     {} of", route.assign(b"192.0.2.7").0)),
            "{text}"
        );

        let forced = Described::new(&["x-canary-force: v2".to_owned()], None, Some("192.0.2.7")).unwrap();
        let text = explain(&route, &forced, None);
        assert!(
            text.contains("the tester override x-canary-force decides") && text.contains("v2 (canary)"),
            "{text}"
        );

        let text = explain(&route, &Described::default(), None);
        assert!(
            text.contains("none found (chain: identity header x-user-id → client address)"),
            "{text}"
        );
        assert!(text.contains("v1 (stable) (no_key: stable)"), "{text}");
    }

    #[test]
    fn at_a_tool_set_weight_the_move_weight_is_where_envoys_weighted_clusters_switch() {
        let route = route(
            r#"{"routes":[{"name":"shop","hosts":["shop.example.com"],"salt":"s1",
            "key_chain":[{"cookie":"session"}], "position_header":"x-canary-position",
            "versions":[{"name":"v1","weight":100},{"name":"v2","weight":0}]}]}"#,
        );
        for n in 0..200 {
            let key = format!("k{n}");
            let described = Described::new(&[], Some(&format!("session={key}")), None).unwrap();
            let text = explain(&route, &described, Some(40));
            assert!(
                text.contains("v2 40% (set by the tool; position header x-canary-position)"),
                "{text}"
            );
            let (bucket, _) = route.assign(key.as_bytes());
            let at = u8::try_from(move_weight(&text) / 100).unwrap();
            if route.version_at_tool_weight(bucket, 40) == 0 {
                assert!(text.contains("version:    v1 (stable)"), "{text}");
                assert_eq!(route.version_at_tool_weight(bucket, at - 1), 0, "{text}");
                assert_eq!(route.version_at_tool_weight(bucket, at), 1, "{text}");
            } else {
                assert!(text.contains("version:    v2 (canary)"), "{text}");
                assert_eq!(route.version_at_tool_weight(bucket, at + 1), 1, "{text}");
                assert_eq!(route.version_at_tool_weight(bucket, at), 0, "{text}");
            }
        }
    }

    #[test]
    fn a_bad_header_argument_is_named() {
        let error = Described::new(&["no-colon".to_owned()], None, None).unwrap_err();
        assert!(error.contains("no-colon") && error.contains("NAME: VALUE"), "{error}");
    }
}
