#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! A real browser's first visit: a page that fires 6 requests at once (Debian's headless Chromium,
//! 20 fresh profiles, against a real Envoy running the filter). docs/assignment.md §3 says what
//! the first page can and cannot guarantee; this measures it.
//!
//! Needs `chromium` (scripts/setup.sh installs the Debian package); fails loudly without it.
//! `cargo test --test browser -- --nocapture` prints what every profile saw.

use std::path::PathBuf;
use std::process::Command;

use sticky_canary_harness::{temp_dir, Backend, Envoy, EnvoyConfig, FilterSpec, HarnessError};

const ROUTING_HEADER: &str = "x-canary-version";
const PROFILES: usize = 20;
const PAGE: &str = "/first-load.html";

/// Three loads of the page: each fires 6 fetches at once and records the version of each
/// response (the filter's `x-canary-served-version`); the first and second load navigate to the
/// next, the third writes every result into the DOM for `--dump-dom`.
const HTML: &str = r#"<!doctype html>
<html><head><title>first load</title></head><body><pre id="result">pending</pre><script>
const round = Number(new URLSearchParams(location.search).get('round') || '1');
const fetches = [1, 2, 3, 4, 5, 6].map(i => fetch('/api/r' + i + '?round=' + round, {cache: 'no-store'}));
Promise.all(fetches).then(responses => {
  const seen = '{{version}}:' + responses.map(r => r.headers.get('x-canary-served-version') || 'none').join(',');
  sessionStorage.setItem('round' + round, seen);
  if (round < 3) {
    location.replace('?round=' + (round + 1));
  } else {
    document.getElementById('result').textContent =
      'RESULT ' + [1, 2, 3].map(r => sessionStorage.getItem('round' + r)).join(' ') + ' END';
  }
}).catch(e => { document.getElementById('result').textContent = 'RESULT error ' + e + ' END'; });
</script></body></html>
"#;

fn must<T>(result: Result<T, HarnessError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// Debian's `chromium` (or `STICKY_CANARY_CHROMIUM`); a clear failure when it is missing.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("STICKY_CANARY_CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "chromium is not installed: run scripts/setup.sh (it installs the Debian package `chromium`), \
         or set STICKY_CANARY_CHROMIUM to a Chromium binary"
    );
}

/// The filter config: `path_prefix` decides whether the page itself goes through the route.
fn config(path_prefix: &str) -> String {
    format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["*"], "path_prefix": "{path_prefix}", "salt": "browser-test",
  "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": 50}}, {{"name": "v2", "weight": 50}}],
  "key_chain": [{{"cookie": "session"}}, {{"new_client_id": {{"cookie": "sc-id", "secure": false}}}}]}}],
  "response_header": "x-canary-served-version"}}"#
    )
}

/// What one profile saw: per load, the document's version and the 6 fetches' versions.
#[derive(Debug)]
struct Visit {
    loads: Vec<(String, Vec<String>)>,
}

impl Visit {
    fn parse(dom: &str) -> Option<Visit> {
        let start = dom.find("RESULT ")? + "RESULT ".len();
        let end = dom[start..].find(" END")? + start;
        let loads = dom[start..end]
            .split(' ')
            .map(|load| {
                let (document, fetches) = load.split_once(':')?;
                Some((
                    document.to_owned(),
                    fetches.split(',').map(str::to_owned).collect::<Vec<_>>(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        (loads.len() == 3 && loads.iter().all(|(_, f)| f.len() == 6)).then_some(Visit { loads })
    }

    /// The versions of the 6 fetches of load `n` (0-based), all one version?
    fn one_version(&self, n: usize) -> Option<&str> {
        let (_, fetches) = &self.loads[n];
        fetches.iter().all(|v| v == &fetches[0]).then_some(fetches[0].as_str())
    }
}

/// One fresh browser profile loading the page (three loads); its DOM at the end.
fn visit(browser: &PathBuf, url: &str) -> Visit {
    let profile = must(temp_dir("chromium-profile"), "a profile dir");
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", browser.display()));
    let dom = String::from_utf8_lossy(&output.stdout);
    Visit::parse(&dom).unwrap_or_else(|| {
        panic!(
            "chromium gave no result (status {}):\n{dom}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// 20 fresh profiles against Envoy with the filter; the page on the route or outside it.
fn measure(path_prefix: &str) -> Vec<Visit> {
    let browser = chromium();
    let pages = vec![(PAGE.to_owned(), HTML.to_owned())];
    let v1 = must(Backend::start_with_pages("v1", pages.clone()), "start v1");
    let v2 = must(Backend::start_with_pages("v2", pages), "start v2");
    let envoy = must(
        Envoy::start(
            &EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2]).with_filter(FilterSpec::embedded(config(path_prefix))),
        ),
        "start Envoy with the filter",
    );
    let url = format!("http://{}{PAGE}", envoy.listener());
    (0..PROFILES).map(|_| visit(&browser, &url)).collect()
}

fn report(name: &str, visits: &[Visit]) -> (usize, usize) {
    let first = visits.iter().filter(|v| v.one_version(0).is_some()).count();
    let later = visits
        .iter()
        .filter(|v| v.one_version(1).is_some() && v.one_version(1) == v.one_version(2))
        .count();
    eprintln!("{name}: first load on one version in {first} of {PROFILES} profiles; second and third loads on one version (the same) in {later} of {PROFILES}");
    for (i, visit) in visits.iter().enumerate() {
        eprintln!("  profile {i:2}: {:?}", visit.loads);
    }
    (first, later)
}

#[test]
fn parallel_first_requests_end_on_one_version_from_the_second_load() {
    // The page is served outside the route (a static page, a CDN, an SPA shell): its first
    // 6 requests reach the route at once, without an id.
    let outside = measure("/api/");
    let (_, later) = report("page outside the route", &outside);
    assert_eq!(later, PROFILES, "every profile on one version from its second load on");
    let mixed = outside.iter().filter(|v| v.one_version(0).is_none()).count();
    // Six independent new ids at 50%: all six agree with probability 2/64.
    assert!(
        mixed >= PROFILES / 2,
        "the first load mixes versions when 6 requests race without an id: {mixed} of {PROFILES}"
    );

    // The page itself goes through the route: its response sets the id before the browser
    // requests anything else, so the whole first page is on one version.
    let on_route = measure("/");
    let (first, later) = report("page on the route", &on_route);
    assert_eq!(later, PROFILES, "every profile on one version from its second load on");
    assert_eq!(
        first, PROFILES,
        "the document's Set-Cookie reaches the 6 subresource requests"
    );
    for visit in &on_route {
        for (document, fetches) in &visit.loads {
            assert_eq!(
                Some(document.as_str()),
                fetches.first().map(String::as_str),
                "the document and its requests agree: {visit:?}"
            );
        }
    }
}
