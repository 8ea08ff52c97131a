//! The day the root context's tick last read from the host clock, so requests know today
//! (for the client-id cookie's day stamp) without a host call.

use core::sync::atomic::{AtomicU32, Ordering};

/// Today (days since 1970, UTC) as last read by the tick; `u32::MAX` until the first read.
/// One per VM, that is per Envoy worker; requests read it without a host call.
static TODAY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Records the host clock's time (nanoseconds since the Unix epoch) as today's day number.
pub fn set_clock(unix_nanoseconds: u64) {
    TODAY.store(policy_core::day_of(unix_nanoseconds / 1_000_000_000), Ordering::Relaxed);
}

/// Today, when the clock has been read.
pub fn today() -> Option<u32> {
    let day = TODAY.load(Ordering::Relaxed);
    (day != u32::MAX).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_gives_days_since_1970() {
        set_clock(1_763_856_000 * 1_000_000_000 + 5);
        assert_eq!(today(), Some(20415));
    }
}
