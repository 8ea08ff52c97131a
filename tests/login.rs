#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // test code: a failed step is a failed test
//! Real Envoy: users keep their version through login, session rotation and logout, across a
//! second device, and across months (the id cookie's sliding refresh). docs/assignment.md §3.
//!
//! Run one: `cargo test --test login journeys -- --nocapture` (prints the figures).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use policy_core::{ClientId, Policy};
use sticky_canary_harness::{
    Backend, Client, CookieJar, Envoy, EnvoyConfig, FilterSpec, HarnessError, Request, Response, SetCookie,
    UpdateOutcome,
};

const ROUTING_HEADER: &str = "x-canary-version";
const HOST: &str = "app.example.com";
const ID_COOKIE: &str = "sc-id";
/// The header a trusted layer (Istio's RequestAuthentication `outputClaimToHeaders`) sets at login.
const IDENTITY_HEADER: &str = "x-user-sub";
const USERS: usize = 2000;
const THREADS: usize = 8;

/// Serialises the tests of this file (each drives Envoy hard on 2 cores).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn must<T>(result: Result<T, HarnessError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// The two chains users are promised to keep their version with: the one written for the old
/// semantics (the app's session cookie first, as the demo and earlier docs had it) and the
/// recommended one (a trusted identity header, then the client id).
const CHAINS: [(&str, &str); 2] = [
    (
        "session first",
        r#"[{"cookie": "session"}, {"new_client_id": {"cookie": "sc-id", "secure": false}}]"#,
    ),
    (
        "recommended",
        r#"[{"identity_header": "x-user-sub"}, {"new_client_id": {"cookie": "sc-id", "secure": false}}]"#,
    ),
];

fn config(key_chain: &str, canary_percent: u32) -> String {
    format!(
        r#"{{"routes": [{{"name": "app", "hosts": ["{HOST}"], "salt": "login-e2e",
  "routing_header": "{ROUTING_HEADER}",
  "versions": [{{"name": "v1", "weight": {}}}, {{"name": "v2", "weight": {canary_percent}}}],
  "key_chain": {key_chain}}}]}}"#,
        100 - canary_percent
    )
}

struct Stack {
    envoy: Envoy,
    _v1: Backend,
    _v2: Backend,
}

fn stack(config_json: &str) -> Stack {
    let v1 = must(Backend::start("v1"), "start v1");
    let v2 = must(Backend::start("v2"), "start v2");
    let envoy = must(
        Envoy::start(
            &EnvoyConfig::by_header(ROUTING_HEADER, &[&v1, &v2]).with_filter(FilterSpec::embedded(config_json)),
        ),
        "start Envoy with the filter",
    );
    Stack {
        envoy,
        _v1: v1,
        _v2: v2,
    }
}

fn push(envoy: &mut Envoy, config_json: &str) {
    match must(envoy.update_filter_config(config_json), "push a config") {
        UpdateOutcome::Accepted => {}
        UpdateOutcome::Rejected { log } => panic!("config rejected:\n{log}"),
    }
}

fn served(response: &Response) -> usize {
    match response.header("x-served-version") {
        Some(b"v1") => 0,
        Some(b"v2") => 1,
        other => panic!("no version in {other:?} (status {})", response.status),
    }
}

/// One user: a browser's cookie jar, whether they are logged in, and what they were served.
struct User {
    number: usize,
    jar: CookieJar,
    logged_in: bool,
    sessions: u32,
    versions: Vec<usize>,
}

/// The steps of a visit.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A page view as things stand.
    Page,
    /// Log in: the app sets a session cookie; the identity header appears.
    Login,
    /// The framework rotates the session id.
    Rotate,
    /// Log out: the session goes, and with it the identity header.
    Logout,
}

impl User {
    fn request(&mut self, step: Step) -> Request {
        match step {
            Step::Page => {}
            Step::Login => {
                self.logged_in = true;
                self.sessions += 1;
                self.jar.set("session", &format!("s-{}-{}", self.number, self.sessions));
            }
            Step::Rotate => {
                self.sessions += 1;
                self.jar.set("session", &format!("s-{}-{}", self.number, self.sessions));
            }
            Step::Logout => {
                self.logged_in = false;
                self.jar.cookies.remove("session");
            }
        }
        let mut request = self.jar.apply(Request::get("/").host(HOST));
        if self.logged_in {
            request = request.header(IDENTITY_HEADER, format!("user-{}", self.number));
        }
        request
    }
}

/// Runs `steps` for every user over `THREADS` keep-alive connections; each user's steps in order.
fn run(envoy: &Envoy, users: &mut [User], steps: &[Step]) {
    let addr = envoy.listener();
    let chunk = users.len().div_ceil(THREADS);
    std::thread::scope(|scope| {
        for part in users.chunks_mut(chunk) {
            scope.spawn(move || {
                let mut client = must(Client::connect(addr), "connect to Envoy");
                for user in part {
                    for &step in steps {
                        let request = user.request(step);
                        let response = must(client.send(&request), "send a request");
                        assert_eq!(response.status, 200, "user {} at {step:?}", user.number);
                        user.jar.store(&response);
                        user.versions.push(served(&response));
                    }
                }
            });
        }
    });
}

/// Users whose version changed between consecutive responses in `versions[from..]`.
fn changed(users: &[User], from: usize) -> usize {
    users
        .iter()
        .filter(|u| {
            u.versions
                .get(from..)
                .is_some_and(|v| v.windows(2).any(|w| w[0] != w[1]))
        })
        .count()
}

/// The version policy-core gives the user's id cookie (its stamp is not hashed).
fn predicted(policy: &Policy, user: &User) -> usize {
    let value = user
        .jar
        .cookies
        .get(ID_COOKIE)
        .unwrap_or_else(|| panic!("user {} has no id cookie: {:?}", user.number, user.jar.cookies));
    policy.routes()[0].assign(ClientId::parse(value.as_bytes()).key).1
}

#[test]
fn journeys_first_visit_login_rotation_logout_move_nobody_at_10_and_50_percent() {
    let _serial = serial();
    let visit = [
        Step::Page,
        Step::Page,
        Step::Login,
        Step::Page,
        Step::Rotate,
        Step::Page,
        Step::Logout,
        Step::Page,
    ];
    let again = [Step::Login, Step::Rotate, Step::Page, Step::Logout, Step::Page];
    for (name, chain) in CHAINS {
        let mut stack = stack(&config(chain, 10));
        let mut users: Vec<User> = (0..USERS)
            .map(|number| User {
                number,
                jar: CookieJar::default(),
                logged_in: false,
                sessions: 0,
                versions: Vec::new(),
            })
            .collect();

        // At 10%: first visit, login, rotation, logout.
        run(&stack.envoy, &mut users, &visit);
        let at_ten = Policy::from_json(config(chain, 10).as_bytes()).unwrap();
        let moved_at_ten = changed(&users, 0);
        let off_plan_ten = users
            .iter()
            .filter(|u| u.versions.last() != Some(&predicted(&at_ten, u)))
            .count();
        let canary_ten = users.iter().filter(|u| u.versions.last() == Some(&1)).count();

        // A ramp step to 50%: the next request may move a user from v1 to v2, nobody else.
        push(&mut stack.envoy, &config(chain, 50));
        let before_ramp: Vec<usize> = users.iter().map(|u| *u.versions.last().unwrap()).collect();
        let at_fifty = Policy::from_json(config(chain, 50).as_bytes()).unwrap();
        let planned: Vec<bool> = users
            .iter()
            .map(|u| predicted(&at_fifty, u) != predicted(&at_ten, u))
            .collect();
        let from = users[0].versions.len();
        run(&stack.envoy, &mut users, &[Step::Page]);
        let mut ramp_moves = 0;
        let mut unplanned = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let now = user.versions[from];
            if now != before_ramp[i] {
                ramp_moves += 1;
                if !(planned[i] && before_ramp[i] == 0 && now == 1) {
                    unplanned.push(user.number);
                }
            } else if planned[i] {
                unplanned.push(user.number);
            }
        }

        // At 50%: log in again, rotate, log out.
        let from = users[0].versions.len();
        run(&stack.envoy, &mut users, &again);
        let moved_at_fifty = changed(&users, from - 1);
        let off_plan_fifty = users
            .iter()
            .filter(|u| u.versions.last() != Some(&predicted(&at_fifty, u)))
            .count();
        let canary_fifty = users.iter().filter(|u| u.versions.last() == Some(&1)).count();

        eprintln!(
            "{name}: {USERS} users; at 10%: {moved_at_ten} changed version over first visit → login → rotation → logout ({canary_ten} on v2); \
             ramp to 50%: {ramp_moves} moved v1 → v2, {} unplanned; at 50%: {moved_at_fifty} changed over login → rotation → logout ({canary_fifty} on v2)",
            unplanned.len()
        );
        assert_eq!(moved_at_ten, 0, "{name}: users changed version at 10%");
        assert_eq!(off_plan_ten, 0, "{name}: users off their id's version at 10%");
        assert!(
            unplanned.is_empty(),
            "{name}: unplanned moves at the ramp step: users {unplanned:?}"
        );
        assert!(
            ramp_moves > USERS / 5,
            "{name}: a 10 → 50% ramp moves about 40%, saw {ramp_moves}"
        );
        assert_eq!(moved_at_fifty, 0, "{name}: users changed version at 50%");
        assert_eq!(off_plan_fifty, 0, "{name}: users off their id's version at 50%");
        assert!(
            (USERS / 20..USERS / 5).contains(&canary_ten) && (USERS * 2 / 5..USERS * 3 / 5).contains(&canary_fifty),
            "{name}: canary users {canary_ten} at 10%, {canary_fifty} at 50%"
        );
    }
}

#[test]
fn a_users_devices_that_first_come_logged_in_share_a_version_and_keep_it_after_logout() {
    let _serial = serial();
    let chain = CHAINS[1].1;
    let stack = stack(&config(chain, 50));
    let policy = Policy::from_json(config(chain, 50).as_bytes()).unwrap();
    let mut client = must(Client::connect(stack.envoy.listener()), "connect");
    let mut canary = 0;
    for user in 0..200 {
        let identity = format!("user-{user}");
        let expected = policy.routes()[0]
            .assign(policy_core::identity_id(b"login-e2e", identity.as_bytes()).as_bytes())
            .1;
        for device in 0..2 {
            let mut jar = CookieJar::default();
            let first = must(
                client.send(&Request::get("/").host(HOST).header(IDENTITY_HEADER, &identity)),
                "send",
            );
            assert_eq!(
                served(&first),
                expected,
                "user {user} device {device}: the identity decides"
            );
            jar.store(&first);
            let id = ClientId::parse(jar.cookies.get(ID_COOKIE).expect("the id cookie is issued").as_bytes())
                .key
                .to_vec();
            assert_eq!(
                id,
                policy_core::identity_id(b"login-e2e", identity.as_bytes()).into_bytes()
            );
            let logged_in = must(
                client.send(
                    &jar.apply(Request::get("/").host(HOST))
                        .header(IDENTITY_HEADER, &identity),
                ),
                "send",
            );
            assert_eq!(served(&logged_in), expected);
            assert!(
                logged_in.header("set-cookie").is_none(),
                "no second Set-Cookie the same day"
            );
            let logged_out = must(client.send(&jar.apply(Request::get("/").host(HOST))), "send");
            assert_eq!(
                served(&logged_out),
                expected,
                "user {user} device {device} moved at logout"
            );
        }
        canary += expected;
    }
    eprintln!("200 users × 2 devices first seen logged in: every device on its user's version ({canary} users on v2)");
    assert!((60..140).contains(&canary), "{canary} of 200 on v2 at 50%");
}

/// Today as the filter counts it (days since 1970, UTC).
fn today() -> u32 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    policy_core::day_of(seconds)
}

#[test]
fn the_id_cookie_is_refreshed_at_most_once_a_day_and_never_moves_anyone() {
    let _serial = serial();
    let chain = r#"[{"cookie": "session"}, {"new_client_id": {"cookie": "sc-id", "secure": false, "max_age_seconds": 2592000, "refresh_after_days": 2}}]"#;
    let stack = stack(&config(chain, 50));
    let policy = Policy::from_json(config(chain, 50).as_bytes()).unwrap();
    let route = &policy.routes()[0];
    let mut client = must(Client::connect(stack.envoy.listener()), "connect");
    // A new client's id is stamped with today, and sent with the full Max-Age.
    let response = must(client.send(&Request::get("/").host(HOST)), "send");
    let issued = SetCookie::parse(response.header_all("set-cookie")[0]).unwrap();
    let parsed = ClientId::parse(issued.value.as_bytes());
    assert_eq!(parsed.key.len(), 32, "{issued:?}");
    assert!(
        parsed.stamp.is_some_and(|d| (today() - 1..=today()).contains(&d)),
        "{issued:?}"
    );
    assert_eq!(issued.attribute("max-age"), Some(Some("2592000")));

    let mut send = |cookie: &[u8]| {
        let day_before = today();
        let response = must(
            client.send(&Request::get("/").host(HOST).header("Cookie", cookie)),
            "send",
        );
        let day_after = today();
        let set_cookie = response
            .header_all("set-cookie")
            .first()
            .map(|v| SetCookie::parse(v).expect("parsable"));
        (served(&response), set_cookie, day_before..=day_after)
    };

    let id = "0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5";
    let expected = route.assign(id.as_bytes()).1;
    let mut refreshes = 0;
    let cases: Vec<(String, bool)> = vec![
        (id.to_owned(), true),                     // an id from before stamps: stamped once
        (format!("{id}.{}", today()), false),      // fresh
        (format!("{id}.{}", today() - 1), false),  // younger than 2 days
        (format!("{id}.{}", today() - 2), true),   // due
        (format!("{id}.{}", today() - 400), true), // long due
        (format!("{id}.{}", today() + 30), false), // from the future: left alone
        (format!("{id}.999999999"), false),        // forged far future
    ];
    for (value, refresh) in &cases {
        let (version, set_cookie, days) = send(format!("session=x; sc-id={value}").as_bytes());
        assert_eq!(
            version, expected,
            "{value}: the stamp never moves anyone (and sc-id wins over session)"
        );
        match (refresh, set_cookie) {
            (false, None) => {}
            (true, Some(cookie)) => {
                refreshes += 1;
                let again = ClientId::parse(cookie.value.as_bytes());
                assert_eq!(again.key, id.as_bytes(), "{value}: the same id");
                assert!(
                    again.stamp.is_some_and(|d| days.contains(&d)),
                    "{value}: today's stamp in {cookie:?}"
                );
                assert_eq!(
                    cookie.attribute("max-age"),
                    Some(Some("2592000")),
                    "{value}: full Max-Age"
                );
                assert_eq!(cookie.attribute("path"), Some(Some("/")));
            }
            (refresh, got) => panic!("{value}: expected a refresh: {refresh}, got {got:?}"),
        }
    }
    assert_eq!(refreshes, 3);

    // Hostile values: each is a key as it stands (no panic, a 200, the whole value's version).
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for value in [
        &b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.12345678901234567890"[..],
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.-1",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.\xff\xfe",
        b"\xff\xfe\xfd.20000",
        b"0af1c3e5d7b9a8f6e4c2b0a9f8e7d6c5.1.2",
        b".",
        b"x.99999999999999999999999999999999",
    ] {
        let mut cookie = b"sc-id=".to_vec();
        cookie.extend_from_slice(value);
        let (version, set_cookie, _) = send(&cookie);
        assert_eq!(version, route.assign(value).1, "{value:?}");
        assert!(
            set_cookie.is_none(),
            "{value:?}: a value the filter never issued is not refreshed"
        );
        *seen.entry(version).or_default() += 1;
    }
    eprintln!(
        "refresh: {refreshes} of {} stamped values refreshed as planned; hostile values served by {seen:?}",
        cases.len()
    );
}
