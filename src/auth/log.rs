//! Logs of refused authentications and cool-downs, rate-limited: an attacker who sprays wrong passwords must
//! not be able to fill the disk or drown the log. Each authenticator (one per shard) writes at most
//! [`LINES_PER_WINDOW`] lines per [`WINDOW_S`] seconds, then one line saying how many it left out. The
//! counters (`/metrics`) count every refusal.

use std::net::IpAddr;

/// Lines written per window, at most.
pub const LINES_PER_WINDOW: u32 = 20;
pub const WINDOW_S: u64 = 60;

/// Why an authentication was refused, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownUser,
    BadPassword,
    /// The user (at this address) or the address is cooling down.
    CoolingDown,
    /// The credentials were right, but the AoR is not the user's.
    NotOwner,
}

impl Refusal {
    fn text(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown user",
            Refusal::BadPassword => "wrong password",
            Refusal::CoolingDown => "refused while cooling down",
            Refusal::NotOwner => "not the AoR's owner",
        }
    }
}

/// The rate limit's state.
#[derive(Debug, Default)]
pub struct RefusalLog {
    window_start_s: u64,
    written: u32,
    left_out: u64,
}

impl RefusalLog {
    /// Logs a refusal (when the window allows); `cooled_down` says this failure started a cool-down.
    pub fn refused(
        &mut self,
        why: Refusal,
        username: &[u8],
        source: IpAddr,
        cooled_down: Option<u64>,
        now_s: u64,
    ) {
        if !self.admit(now_s) {
            return;
        }
        // Debug formatting escapes control characters: a username cannot forge log lines.
        let user = String::from_utf8_lossy(username);
        match cooled_down {
            Some(cooldown_s) => tracing::warn!(
                "authentication: {} for user {user:?} from {source}; user or address now refused for {cooldown_s} s",
                why.text()
            ),
            None => tracing::info!(
                "authentication: {} for user {user:?} from {source}",
                why.text()
            ),
        }
    }

    /// True when a line may be written now; opens a new window (and says what the last one left out).
    fn admit(&mut self, now_s: u64) -> bool {
        if now_s >= self.window_start_s.saturating_add(WINDOW_S) {
            if self.left_out > 0 {
                tracing::warn!(
                    "authentication: {} more refusals in the last {WINDOW_S} s were not logged",
                    self.left_out
                );
            }
            *self = RefusalLog {
                window_start_s: now_s,
                ..RefusalLog::default()
            };
        }
        if self.written < LINES_PER_WINDOW {
            self.written += 1;
            true
        } else {
            self.left_out += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_per_window_then_a_new_window() {
        let mut log = RefusalLog::default();
        let admitted = (0..100).filter(|_| log.admit(1000)).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(log.left_out, 100 - u64::from(LINES_PER_WINDOW));
        assert!(!log.admit(1000 + WINDOW_S - 1));
        assert!(log.admit(1000 + WINDOW_S));
        assert_eq!(log.left_out, 0);
    }
}
