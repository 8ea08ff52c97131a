//! The day the root context's tick last read from the host clock, so requests know today
//! (for the client-id cookie's day stamp) without a host call.

use std::cell::Cell;

/// Today (days since 1970, UTC) as last read from the host; one per VM, that is per Envoy worker.
#[derive(Debug)]
pub struct Clock {
    /// `u32::MAX` until the first read.
    today: Cell<u32>,
}

impl Clock {
    pub const fn new() -> Clock {
        Clock {
            today: Cell::new(u32::MAX),
        }
    }

    /// Records the host clock's time (nanoseconds since the Unix epoch) as today's day number.
    pub fn set(&self, unix_nanoseconds: u64) {
        self.today.set(policy_core::day_of(unix_nanoseconds / 1_000_000_000));
    }

    /// Today, once the clock has been read.
    pub fn today(&self) -> Option<u32> {
        let day = self.today.get();
        (day != u32::MAX).then_some(day)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_gives_days_since_1970() {
        let clock = Clock::new();
        assert_eq!(clock.today(), None);
        clock.set(1_763_856_000 * 1_000_000_000 + 5);
        assert_eq!(clock.today(), Some(20415));
    }
}
