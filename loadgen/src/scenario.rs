//! Which REGISTER a simulated user sends next, given the scenario and the user's state.

use thiserror::Error;

use corereg_sip::client::request::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Initial registrations (a user re-registers when the run outlasts one pass over the users).
    Register,
    /// Refreshes of an existing binding (a user without one registers first).
    Refresh,
    /// Register then unregister (Expires: 0), alternating per user.
    Unregister,
    /// Weighted mix of register/refresh/unregister, see `--mix`.
    Mixed,
    /// register -> `--refreshes` refreshes -> unregister, repeated.
    Lifecycle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Register => "register",
            Scenario::Refresh => "refresh",
            Scenario::Unregister => "unregister",
            Scenario::Mixed => "mixed",
            Scenario::Lifecycle => "lifecycle",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("mix must be three non-negative integers register:refresh:unregister with a positive sum")]
pub struct MixError;

/// Relative weights of the actions in the `mixed` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub register: u32,
    pub refresh: u32,
    pub unregister: u32,
}

impl Default for Mix {
    /// Mostly refreshes, as on a live network where phones refresh far more often than they boot.
    fn default() -> Self {
        Mix {
            register: 10,
            refresh: 80,
            unregister: 10,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = MixError;
    fn from_str(s: &str) -> Result<Self, MixError> {
        let parts: Vec<u32> = s
            .split(':')
            .map(|p| p.trim().parse::<u32>().map_err(|_| MixError))
            .collect::<Result<_, _>>()?;
        let [register, refresh, unregister] = parts[..] else {
            return Err(MixError);
        };
        if register as u64 + refresh as u64 + unregister as u64 == 0 {
            return Err(MixError);
        }
        Ok(Mix {
            register,
            refresh,
            unregister,
        })
    }
}

/// The part of a user's state the choice depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserView {
    pub registered: bool,
    pub refreshes: u16,
}

/// Small deterministic generator (xorshift64*): reproducible mixes without a dependency.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

pub fn next_action(
    scenario: Scenario,
    mix: Mix,
    refreshes_per_life: u16,
    user: UserView,
    rng: &mut u64,
) -> Action {
    // Refreshing or removing a binding that does not exist would measure error paths, not the
    // scenario: an unregistered user always registers first.
    if !user.registered {
        return Action::Register;
    }
    match scenario {
        Scenario::Register => Action::Register,
        Scenario::Refresh => Action::Refresh,
        Scenario::Unregister => Action::Unregister,
        Scenario::Lifecycle => {
            if user.refreshes < refreshes_per_life {
                Action::Refresh
            } else {
                Action::Unregister
            }
        }
        Scenario::Mixed => {
            let total = mix.register as u64 + mix.refresh as u64 + mix.unregister as u64;
            let r = next_random(rng) % total.max(1);
            if r < mix.register as u64 {
                Action::Register
            } else if r < mix.register as u64 + mix.refresh as u64 {
                Action::Refresh
            } else {
                Action::Unregister
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mix() {
        assert_eq!(
            "1:2:3".parse::<Mix>(),
            Ok(Mix {
                register: 1,
                refresh: 2,
                unregister: 3
            })
        );
        assert!("1:2".parse::<Mix>().is_err());
        assert!("0:0:0".parse::<Mix>().is_err());
        assert!("a:b:c".parse::<Mix>().is_err());
    }

    #[test]
    fn lifecycle_order() {
        let mut rng = 1;
        let mut u = UserView::default();
        let mut seq = Vec::new();
        for _ in 0..5 {
            let a = next_action(Scenario::Lifecycle, Mix::default(), 2, u, &mut rng);
            seq.push(a);
            match a {
                Action::Register => {
                    u = UserView {
                        registered: true,
                        refreshes: 0,
                    }
                }
                Action::Refresh => u.refreshes += 1,
                Action::Unregister => u = UserView::default(),
            }
        }
        use Action::*;
        assert_eq!(seq, [Register, Refresh, Refresh, Unregister, Register]);
    }

    #[test]
    fn mixed_follows_weights() {
        let mut rng = 0x1234_5678;
        let u = UserView {
            registered: true,
            refreshes: 0,
        };
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            match next_action(Scenario::Mixed, Mix::default(), 0, u, &mut rng) {
                Action::Register => counts[0] += 1,
                Action::Refresh => counts[1] += 1,
                Action::Unregister => counts[2] += 1,
            }
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
        assert!((78_000..82_000).contains(&counts[1]), "{counts:?}");
        assert!((9_000..11_000).contains(&counts[2]), "{counts:?}");
    }
}
