//! The filter's lifecycle, natively: [`Callbacks`] driven through the callbacks Envoy makes
//! (context create, configure, request headers, response headers, tick, delete) over the fake
//! host, with assertions on the host calls it made.

use std::collections::HashMap;
use std::rc::Rc;

use crate::fake::{Call, FakeHost};
use crate::host::{Headers, Level};
use crate::Callbacks;

const ROOT: u32 = 1;
const TODAY: u32 = 20415;
const ID: &str = "0123456789abcdef0123456789abcdef";

/// One route, two versions, a session cookie then a new client id, an override with a secret,
/// and the served version echoed on the response.
fn config(versions: (&str, &str)) -> String {
    format!(
        r#"{{"routes": [{{"name": "shop", "hosts": ["shop.example.com"], "salt": "s",
          "versions": [{{"name": "{}", "weight": 50}}, {{"name": "{}", "weight": 50}}],
          "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "sc"}}}}],
          "override": {{"header": "x-canary-force", "allow": ["{}"],
                        "secret_header": "x-canary-secret", "secret": "0123456789abcdef"}}}}],
          "response_header": "x-canary-served-version"}}"#,
        versions.0, versions.1, versions.1
    )
}

fn v1_v2() -> String {
    config(("v1", "v2"))
}

/// A VM with one plugin configured with `config`.
fn start(config: &str) -> Rc<Callbacks<FakeHost>> {
    let filter = Rc::new(Callbacks::new(FakeHost::new()));
    assert!(filter.vm_start());
    filter.context_create(ROOT, 0);
    assert!(reconfigure(&filter, config), "{:?}", FakeHost::take_calls());
    FakeHost::take_calls();
    filter
}

fn reconfigure(filter: &Callbacks<FakeHost>, config: &str) -> bool {
    FakeHost::with(|host| host.config = config.as_bytes().to_vec());
    filter.configure(ROOT, config.len())
}

fn set_request(headers: &[(&str, &str)]) {
    FakeHost::with(|host| {
        host.request = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        host.response = Vec::new();
    });
}

/// Context create and request headers, with `headers` as the request's.
fn begin(filter: &Callbacks<FakeHost>, id: u32, headers: &[(&str, &str)]) {
    set_request(headers);
    filter.context_create(id, ROOT);
    filter.request_headers(id);
}

/// Response headers and delete.
fn finish(filter: &Callbacks<FakeHost>, id: u32) {
    FakeHost::with(|host| host.response = Vec::new());
    filter.response_headers(id);
    filter.delete(id);
}

/// What one request through the filter left: the request headers as they went upstream, the
/// response headers (the app sent none), and every host call.
struct Exchange {
    upstream: Vec<(String, String)>,
    response: Vec<(String, String)>,
    calls: Vec<Call>,
}

impl Exchange {
    fn upstream(&self, name: &str) -> Option<&str> {
        self.upstream.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn response(&self, name: &str) -> Option<&str> {
        self.response.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn logs(&self, level: Level) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                Call::Log(l, message) if *l == level => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn exchange(filter: &Callbacks<FakeHost>, id: u32, headers: &[(&str, &str)]) -> Exchange {
    FakeHost::take_calls();
    begin(filter, id, headers);
    let upstream = FakeHost::with(|host| host.request.clone());
    finish(filter, id);
    Exchange {
        upstream,
        response: FakeHost::with(|host| host.response.clone()),
        calls: FakeHost::take_calls(),
    }
}

fn shop(cookie: &str) -> Vec<(&'static str, String)> {
    vec![(":authority", "shop.example.com".into()), ("cookie", cookie.to_owned())]
}

fn as_pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// Assignment counts by version name (route shop, any source), as the host's counters hold them.
fn counted_by_version() -> HashMap<String, u64> {
    let mut by_version = HashMap::new();
    for (name, count) in FakeHost::counts() {
        if let Some(rest) = name.strip_prefix("sticky_canary_assignments_total.route.shop.version.") {
            let version = rest.split('.').next().unwrap().to_owned();
            *by_version.entry(version).or_insert(0) += count;
        }
    }
    by_version
}

fn increments(calls: &[Call]) -> usize {
    calls.iter().filter(|c| matches!(c, Call::Increment(..))).count()
}

#[test]
fn a_request_keeps_the_configuration_it_started_with() {
    let filter = start(&v1_v2());
    // Request 2 is decided under the first configuration; request 3 is created under it, and
    // its request headers only arrive after the replacement.
    begin(&filter, 2, &as_pairs(&shop("session=a")));
    let routed = FakeHost::with(|host| host.request.clone());
    assert!(routed
        .iter()
        .any(|(n, v)| n == "x-canary-version" && (v == "v1" || v == "v2")));
    set_request(&[]);
    filter.context_create(3, ROOT);

    assert!(reconfigure(&filter, &config(("blue", "green"))));
    FakeHost::take_calls();

    filter.response_headers(2);
    let served = FakeHost::with(|host| host.response.clone());
    assert!(
        served
            .iter()
            .any(|(n, v)| n == "x-canary-served-version" && (v == "v1" || v == "v2")),
        "{served:?}"
    );
    filter.delete(2);

    set_request(&as_pairs(&shop("session=b")));
    filter.request_headers(3);
    let upstream = FakeHost::with(|host| host.request.clone());
    assert!(upstream
        .iter()
        .any(|(n, v)| n == "x-canary-version" && (v == "v1" || v == "v2")));
    // The replacement handed over the old configuration's count of request 2; request 3's
    // count reaches the host when the old configuration's last request ends.
    assert_eq!(
        counted_by_version().values().sum::<u64>(),
        0,
        "counted before the flush"
    );
    let before = FakeHost::take_calls();
    assert_eq!(increments(&before), 0, "{before:?}");
    finish(&filter, 3);
    assert_eq!(counted_by_version().values().sum::<u64>(), 1);

    // A request begun after the replacement gets the new versions.
    let after = exchange(&filter, 4, &as_pairs(&shop("session=c")));
    let version = after.upstream("x-canary-version").unwrap();
    assert!(version == "blue" || version == "green", "{version}");
    assert_eq!(after.response("x-canary-served-version"), Some(version));
}

#[test]
fn the_replaced_configuration_hands_over_its_counts_at_once_and_its_last_stream_the_rest() {
    let filter = start(&v1_v2());
    for id in 2..7 {
        exchange(&filter, id, &as_pairs(&shop(&format!("session={id}"))));
    }
    begin(&filter, 7, &as_pairs(&shop("session=7")));
    FakeHost::take_calls();
    assert!(reconfigure(&filter, &config(("blue", "green"))));
    // Requests 2 to 7 were counted under the old configuration; the replacement flushed them.
    let old: u64 = FakeHost::counts().values().sum();
    assert_eq!(old, 6);
    FakeHost::take_calls();
    finish(&filter, 7);
    // Request 7 was already flushed with the others: nothing is counted twice.
    assert_eq!(FakeHost::counts().values().sum::<u64>(), 0);
}

#[test]
fn counts_reach_the_host_exactly_once_each() {
    let filter = start(&v1_v2());
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut calls = Vec::new();
    let request = |id: u32, expected: &mut HashMap<String, u64>, calls: &mut Vec<Call>| {
        let exchange = exchange(&filter, id, &as_pairs(&shop(&format!("session={id}"))));
        *expected
            .entry(exchange.upstream("x-canary-version").unwrap().to_owned())
            .or_insert(0) += 1;
        assert_eq!(increments(&exchange.calls), 0, "a request made a counter call");
        calls.extend(exchange.calls);
    };
    for id in 2..12 {
        request(id, &mut expected, &mut calls);
    }
    // On the tick: each counter once, with the sum of its requests.
    filter.tick(ROOT);
    let ticked = FakeHost::take_calls();
    let flushed: Vec<u32> = ticked
        .iter()
        .filter_map(|c| {
            if let Call::Increment(id, _) = c {
                Some(*id)
            } else {
                None
            }
        })
        .collect();
    let distinct: std::collections::HashSet<_> = flushed.iter().collect();
    assert_eq!(
        flushed.len(),
        distinct.len(),
        "a counter flushed twice in one tick: {ticked:?}"
    );
    FakeHost::with(|host| host.calls.clone_from(&ticked));
    assert_eq!(counted_by_version(), expected, "the tick flushed {ticked:?}");
    calls.extend(FakeHost::take_calls());
    filter.tick(ROOT);
    let idle = FakeHost::take_calls();
    assert_eq!(
        increments(&idle),
        0,
        "a tick with nothing counted made counter calls: {idle:?}"
    );
    for id in 12..15 {
        request(id, &mut expected, &mut calls);
    }
    // On the root's delete: what the tick had not flushed yet.
    filter.delete(ROOT);
    calls.extend(FakeHost::take_calls());
    FakeHost::with(|host| host.calls = calls);
    assert_eq!(counted_by_version(), expected);
    assert_eq!(expected.values().sum::<u64>(), 13);
    // And requests after the root is gone are not routed, nor counted.
    let orphan = exchange(&filter, 20, &as_pairs(&shop("session=x")));
    assert!(!orphan.calls.iter().any(Call::writes_headers), "{:?}", orphan.calls);
}

#[test]
fn a_callback_during_a_callback_is_ignored_and_harms_nothing() {
    let filter = start(&v1_v2());
    let config = v1_v2();
    let weak = Rc::downgrade(&filter);
    let mut fired = false;
    // While request 2's headers are being written, the host calls every callback back in.
    FakeHost::on_call(move |call| {
        if fired || !matches!(call, Call::Replace(Headers::Request, name, _) if name == "x-canary-version") {
            return;
        }
        fired = true;
        let filter = weak.upgrade().unwrap();
        filter.delete(2);
        filter.context_create(2, ROOT);
        filter.request_headers(2);
        filter.response_headers(2);
        assert!(!filter.configure(ROOT, config.len()));
        filter.tick(ROOT);
        filter.context_create(9, ROOT);
        filter.delete(ROOT);
    });
    let first = exchange(&filter, 2, &[(":authority", "shop.example.com")]);
    // Each re-entry was refused and said so; request 2 went on as if nothing had happened.
    let refused = first
        .logs(Level::Error)
        .iter()
        .filter(|m| m.contains("while another was running"))
        .count();
    assert_eq!(refused, 8, "{:?}", first.calls);
    assert!(first.upstream("x-canary-version").is_some());
    let cookie = first.response("set-cookie").unwrap();
    assert!(cookie.starts_with("sc=000102030405060708090a0b0c0d0e0f."), "{cookie}");
    assert!(first.response("x-canary-served-version").is_some());
    // The state is whole: the root and its configuration are still there, nothing leaked in.
    filter.tick(ROOT);
    assert_eq!(counted_by_version().values().sum::<u64>(), 1);
    let second = exchange(&filter, 3, &as_pairs(&shop("session=a")));
    assert!(second.upstream("x-canary-version").is_some());
    assert!(second.logs(Level::Error).is_empty(), "{:?}", second.calls);
}

#[test]
fn override_and_secret_headers_never_reach_the_upstream() {
    let filter = start(&v1_v2());
    // (override, secret, honoured)
    let cases = [
        (Some("v2"), Some("0123456789abcdef"), true),
        (Some("v2"), Some("wrong-secret-000"), false),
        (Some("v2"), None, false),
        (Some("v1"), Some("0123456789abcdef"), false),
        (None, Some("0123456789abcdef"), false),
        (None, None, false),
    ];
    for pairs_fail in [None, Some(2)] {
        FakeHost::with(|host| host.pairs_fail = pairs_fail);
        for (id, (force, secret, honoured)) in cases.into_iter().enumerate() {
            let mut headers = vec![(":authority", "shop.example.com"), ("cookie", "session=abc")];
            headers.extend(force.map(|v| ("x-canary-force", v)));
            headers.extend(secret.map(|v| ("x-canary-secret", v)));
            let exchange = exchange(&filter, 10 + id as u32, &headers);
            let case = format!("{force:?} {secret:?}, pairs status {pairs_fail:?}");
            assert_eq!(exchange.upstream("x-canary-force"), None, "{case}");
            assert_eq!(exchange.upstream("x-canary-secret"), None, "{case}");
            // The removals themselves: of each header the request carries; without the one
            // read of every header, of both, blindly.
            for (name, sent) in [("x-canary-force", force), ("x-canary-secret", secret)] {
                let removed = exchange.calls.contains(&Call::Remove(Headers::Request, name.into()));
                assert_eq!(removed, sent.is_some() || pairs_fail.is_some(), "{name}: {case}");
            }
            if honoured {
                assert_eq!(exchange.upstream("x-canary-version"), Some("v2"), "{case}");
                assert_eq!(exchange.response("x-canary-served-version"), Some("v2"), "{case}");
            }
        }
    }
    // Honoured and refused were both counted: the override under `override`, the rest by cookie.
    filter.tick(ROOT);
    let counts = FakeHost::counts();
    assert_eq!(
        counts.get("sticky_canary_assignments_total.route.shop.version.v2.source.override"),
        Some(&2)
    );
    let by_cookie: u64 = counts
        .iter()
        .filter(|(name, _)| name.ends_with(".source.cookie"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(by_cookie, 10);
}

#[test]
fn a_new_client_gets_its_id_cookie_and_a_returning_one_a_refresh_once_a_day() {
    let filter = start(&v1_v2());
    let new = exchange(&filter, 2, &[(":authority", "shop.example.com")]);
    let set_cookie = new.response("set-cookie").unwrap();
    assert!(
        set_cookie.starts_with(&format!(
            "sc=000102030405060708090a0b0c0d0e0f.{TODAY}; Path=/; Max-Age=2592000"
        )),
        "{set_cookie}"
    );
    assert_eq!(
        new.calls.iter().filter(|c| matches!(c, Call::Add(..))).count(),
        1,
        "{:?}",
        new.calls
    );

    let returning = |id: u32, value: &str| exchange(&filter, id, &as_pairs(&shop(&format!("sc={value}"))));
    // Stamped today, or (a clock a day ahead) tomorrow: no Set-Cookie.
    let fresh = returning(3, &format!("{ID}.{TODAY}"));
    assert_eq!(fresh.response("set-cookie"), None);
    assert_eq!(
        returning(4, &format!("{ID}.{}", TODAY + 1)).response("set-cookie"),
        None
    );
    // Stamped yesterday, or not stamped: the same id again, stamped today, and the same version.
    for (id, value) in [(5, format!("{ID}.{}", TODAY - 1)), (6, ID.to_owned())] {
        let due = returning(id, &value);
        let refreshed = due.response("set-cookie").unwrap_or_default();
        assert!(
            refreshed.starts_with(&format!("sc={ID}.{TODAY}; ")),
            "{value}: {refreshed}"
        );
        assert_eq!(due.upstream("x-canary-version"), fresh.upstream("x-canary-version"));
    }
    // The tick reads the clock: a day later, today's cookie is due.
    FakeHost::with(|host| host.now_nanoseconds += 86_400 * 1_000_000_000);
    filter.tick(ROOT);
    let next_day = returning(7, &format!("{ID}.{TODAY}"));
    let refreshed = next_day.response("set-cookie").unwrap_or_default();
    assert!(
        refreshed.starts_with(&format!("sc={ID}.{}; ", TODAY + 1)),
        "{refreshed}"
    );
}

#[test]
fn a_request_on_no_route_is_not_touched() {
    let filter = start(&v1_v2());
    let other = exchange(
        &filter,
        2,
        &[
            (":authority", "other.example.org"),
            ("x-canary-version", "v2"),
            ("x-canary-force", "v2"),
            ("x-canary-secret", "0123456789abcdef"),
        ],
    );
    assert!(!other.calls.iter().any(Call::writes_headers), "{:?}", other.calls);
    assert_eq!(other.upstream("x-canary-version"), Some("v2"));
    assert_eq!(other.upstream("x-canary-force"), Some("v2"));
    filter.tick(ROOT);
    assert!(FakeHost::counts().is_empty());
}

#[test]
fn an_invalid_configuration_is_refused_and_the_previous_one_stays() {
    let filter = start(&v1_v2());
    let rejections = |filter: &Callbacks<FakeHost>, config: &str| {
        FakeHost::take_calls();
        assert!(!reconfigure(filter, config), "accepted {config}");
        let calls = FakeHost::take_calls();
        let errors: Vec<String> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Log(Level::Error, m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        FakeHost::with(|host| host.calls = calls);
        let counted = FakeHost::counts().get("sticky_canary_config_rejections_total").copied();
        (errors, counted)
    };
    let bad_weights = config(("v1", "v2")).replace("\"weight\": 50}, {", "\"weight\": 60}, {");
    let (errors, counted) = rejections(&filter, &bad_weights);
    assert_eq!(counted, Some(1));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sticky-canary: invalid config: routes[0].versions")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("configuration refused")), "{errors:?}");
    let (errors, counted) = rejections(&filter, "");
    assert_eq!(counted, Some(1));
    assert!(
        errors.iter().any(|e| e.contains("no configuration given")),
        "{errors:?}"
    );

    // The first configuration still routes.
    let routed = exchange(&filter, 2, &as_pairs(&shop("session=a")));
    let version = routed.upstream("x-canary-version").unwrap();
    assert!(version == "v1" || version == "v2", "{version}");
}

#[cfg(not(feature = "no-trace"))]
#[test]
fn at_debug_level_each_routed_request_leaves_one_trace_line_without_credentials() {
    let filter = start(&v1_v2());
    let session = "session-value-that-is-a-credential";
    let cookie = shop(&format!("session={session}"));
    let headers = as_pairs(&cookie);
    // At info, the default: no trace.
    assert!(exchange(&filter, 2, &headers).logs(Level::Debug).is_empty());

    // The operator lowers the level; the next tick follows it.
    FakeHost::with(|host| host.level = Some(Level::Debug));
    filter.tick(ROOT);
    let policy = policy_core::Policy::from_json(v1_v2().as_bytes()).unwrap();
    let (bucket, version) = policy.routes()[0].assign(session.as_bytes());
    let version = policy.routes()[0].versions()[version].name();
    let traced = exchange(&filter, 3, &headers);
    assert_eq!(
        traced.logs(Level::Debug),
        [format!(
            "sticky-canary: decision route=shop version={version} source=cookie bucket={bucket} why=\"cookie found\""
        )]
    );

    // Refused override, new client: why, and six digits of the new id at most.
    let refused = exchange(
        &filter,
        4,
        &[
            (":authority", "shop.example.com"),
            ("x-canary-force", "v2"),
            ("x-canary-secret", "wrong-secret-000"),
        ],
    );
    let line = refused.logs(Level::Debug).concat();
    assert!(line.contains("source=new_id"), "{line}");
    assert!(line.contains("why=\"override refused"), "{line}");
    assert!(line.contains("new client id issued\" cookie_id=000102…"), "{line}");
    let honoured = exchange(
        &filter,
        5,
        &[
            (":authority", "shop.example.com"),
            ("x-canary-force", "v2"),
            ("x-canary-secret", "0123456789abcdef"),
            ("cookie", &format!("sc={ID}.{}", TODAY - 3)),
        ],
    );
    assert_eq!(
        honoured.logs(Level::Debug),
        ["sticky-canary: decision route=shop version=v2 source=override bucket=none why=\"override honoured\""]
    );
    let due = exchange(&filter, 6, &as_pairs(&shop(&format!("sc={ID}.{}", TODAY - 3))));
    assert!(due
        .logs(Level::Debug)
        .concat()
        .contains("refreshed\" cookie_id=012345…"));
    for exchange in [&traced, &refused, &honoured, &due] {
        for line in exchange.logs(Level::Debug) {
            for credential in [
                session,
                "0123456789abcdef",
                "wrong-secret-000",
                ID,
                "000102030405060708090a0b0c0d0e0f",
            ] {
                assert!(!line.contains(credential), "{line} shows {credential}");
            }
        }
    }

    // Back to info: no trace after the next tick.
    FakeHost::with(|host| host.level = Some(Level::Info));
    filter.tick(ROOT);
    assert!(exchange(&filter, 7, &headers).logs(Level::Debug).is_empty());
}

#[test]
fn the_vm_start_names_the_build_at_info_level() {
    let filter = Callbacks::new(FakeHost::new());
    assert!(filter.vm_start());
    let calls = FakeHost::take_calls();
    assert_eq!(calls[0], Call::LogLevel);
    assert!(
        matches!(&calls[1], Call::Log(Level::Info, m) if m.starts_with("sticky-canary filter 0.1.0 (git ")),
        "{calls:?}"
    );
    // At error level, or with the host's logging off, the same start writes nothing.
    for level in [Some(Level::Error), None] {
        FakeHost::with(|host| host.level = level);
        assert!(filter.vm_start());
        assert_eq!(FakeHost::take_calls(), [Call::LogLevel], "{level:?}");
    }
}

#[test]
fn a_vm_defines_each_counter_once_however_many_configurations_it_takes() {
    let filter = start(&v1_v2());
    let defines = |calls: &[Call]| calls.iter().filter(|c| matches!(c, Call::DefineCounter(_))).count();
    // The same names again (the weights change on a ramp): no define call at all.
    for n in 0..5 {
        assert!(
            reconfigure(
                &filter,
                &v1_v2().replace("\"weight\": 50", &format!("\"weight\": {}", 50 + n % 2))
            ) || n % 2 == 1
        );
    }
    assert_eq!(
        defines(&FakeHost::take_calls()),
        0,
        "counters re-defined on a reconfigure"
    );
    // A new root (the next pushed configuration) with a new version: only its names.
    filter.context_create(ROOT + 100, 0);
    FakeHost::with(|host| host.config = config(("v1", "v3")).into_bytes());
    assert!(filter.configure(ROOT + 100, config(("v1", "v3")).len()));
    let calls = FakeHost::take_calls();
    let defined: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::DefineCounter(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !defined.is_empty() && defined.iter().all(|n| n.contains(".version.v3.")),
        "{defined:?}"
    );
    // Counting still reaches the right counters.
    let exchange = exchange(&filter, 9, &as_pairs(&shop("session=9")));
    drop(exchange);
}

#[test]
fn the_exposure_log_sets_one_property_per_decision_and_none_when_off() {
    let exposed = |calls: &[Call]| -> Vec<(String, String)> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::SetProperty(path, value) => Some((path.clone(), value.clone())),
                _ => None,
            })
            .collect()
    };
    let filter = start(&v1_v2());
    let off = exchange(&filter, 2, &as_pairs(&shop("session=alice")));
    assert!(
        exposed(&off.calls).is_empty(),
        "a property set with the exposure log off"
    );

    let on = v1_v2().replacen('{', r#"{"exposure_log": true, "#, 1);
    let filter = start(&on);
    let policy = policy_core::Policy::from_json(on.as_bytes()).unwrap();
    let route = &policy.routes()[0];
    let (bucket, version) = route.assign(b"alice");
    let exchange = exchange(&filter, 2, &as_pairs(&shop("session=alice")));
    assert_eq!(
        exposed(&exchange.calls),
        vec![(
            crate::EXPOSURE_PROPERTY.to_owned(),
            format!(
                "route=shop version={} source=cookie bucket={bucket}",
                route.versions()[version].name()
            )
        )]
    );
    // A request on no route: nothing.
    let other = self::exchange(&filter, 3, &[(":authority", "other.example.com")]);
    assert!(exposed(&other.calls).is_empty());
}

#[test]
fn a_cutover_keeps_an_active_user_and_moves_one_back_after_the_idle_time_on_the_ticks_clock() {
    let now = FakeHost::with(|host| host.now_nanoseconds) / 1_000_000_000;
    let config = format!(
        r#"{{"routes": [{{"name": "shop", "hosts": ["shop.example.com"], "salt": "s",
          "versions": [{{"name": "blue", "weight": 100}}, {{"name": "green", "weight": 0}}],
          "key_chain": [{{"new_client_id": {{"cookie": "sc"}}}}],
          "cutover": {{"to": "green", "start": {}, "deadline": {}, "idle_seconds": 60}}}}]}}"#,
        now - 10,
        now + 3600
    );
    let filter = start(&config);
    // The counts each tick hands the host (a tick flushes what the requests before it counted).
    let mut counted: HashMap<String, u64> = HashMap::new();
    let mut tick = |filter: &Callbacks<FakeHost>| {
        filter.tick(ROOT);
        for (name, n) in FakeHost::counts() {
            *counted.entry(name).or_insert(0) += n;
        }
    };
    let visit = |id: u32, value: &str| exchange(&filter, id, &as_pairs(&shop(&format!("sc={value}"))));
    // An id from before the start: kept on blue, the response records now as last seen.
    let kept = visit(2, &format!("{ID}.{TODAY}"));
    assert_eq!(kept.upstream("x-canary-version"), Some("blue"));
    let cookie = kept.response("set-cookie").unwrap_or_default().to_owned();
    assert!(cookie.starts_with(&format!("sc={ID}.{TODAY}.0.{now}; ")), "{cookie}");
    let value = cookie
        .trim_start_matches("sc=")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    // Back 30 s later: still kept.
    FakeHost::with(|host| host.now_nanoseconds += 30 * 1_000_000_000);
    tick(&filter);
    assert_eq!(visit(3, &value).upstream("x-canary-version"), Some("blue"));
    // Back 90 s after that visit: moved to green, and new from then on.
    FakeHost::with(|host| host.now_nanoseconds += 90 * 1_000_000_000);
    tick(&filter);
    let moved = visit(4, &format!("{ID}.{TODAY}.0.{}", now + 30));
    assert_eq!(moved.upstream("x-canary-version"), Some("green"));
    let later = now + 120;
    assert!(
        moved
            .response("set-cookie")
            .unwrap_or_default()
            .starts_with(&format!("sc={ID}.{TODAY}.{later}.{later}; ")),
        "{:?}",
        moved.response("set-cookie")
    );
    // A new client: green at once.
    let new = exchange(&filter, 5, &[(":authority", "shop.example.com")]);
    assert_eq!(new.upstream("x-canary-version"), Some("green"));
    tick(&filter);
    for (outcome, n) in [("kept", 2), ("moved", 1), ("new", 1)] {
        assert_eq!(
            counted.get(&format!("sticky_canary_cutover_total.route.shop.outcome.{outcome}")),
            Some(&n),
            "{counted:?}"
        );
    }
}
