//! A container's run state as dockerd keeps it, so that `docker ps` computes `State` and
//! `Status` ("Up 3 minutes (healthy)") at the moment it is asked, as an engine does, instead of
//! repeating the text of the last re-read.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// dockerd's `container.State`, the parts `ps` reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub dead: bool,
    pub removing: bool,
    pub exit_code: i64,
    /// Unix nanoseconds; `None` for Go's zero time (never started).
    pub started_at: Option<i128>,
    pub finished_at: Option<i128>,
    /// `starting`, `healthy` or `unhealthy`; `None` without a health check.
    pub health: Option<String>,
}

impl RunState {
    /// Reads an inspect document's `State`.
    pub fn from_inspect(inspect: &Value) -> RunState {
        let s = &inspect["State"];
        let b = |k: &str| s[k].as_bool().unwrap_or(false);
        RunState {
            running: b("Running"),
            paused: b("Paused"),
            restarting: b("Restarting"),
            dead: b("Dead"),
            removing: s["Status"] == "removing",
            exit_code: s["ExitCode"].as_i64().unwrap_or(0),
            started_at: s["StartedAt"].as_str().and_then(parse_rfc3339),
            finished_at: s["FinishedAt"].as_str().and_then(parse_rfc3339),
            health: s["Health"]["Status"].as_str().filter(|h| !h.is_empty()).map(str::to_string),
        }
    }

    /// dockerd's `StateString`.
    pub fn state(&self) -> &'static str {
        if self.running {
            if self.paused {
                return "paused";
            }
            if self.restarting {
                return "restarting";
            }
            return "running";
        }
        if self.removing {
            "removing"
        } else if self.dead {
            "dead"
        } else if self.started_at.is_none() {
            "created"
        } else {
            "exited"
        }
    }

    /// dockerd's `State.String()` at `now` (Unix nanoseconds).
    pub fn status(&self, now: i128) -> String {
        let since = |t: Option<i128>| human_duration(now - t.unwrap_or(now));
        if self.running {
            if self.paused {
                return format!("Up {} (Paused)", since(self.started_at));
            }
            if self.restarting {
                return format!("Restarting ({}) {} ago", self.exit_code, since(self.finished_at));
            }
            return match self.health.as_deref() {
                Some("starting") => format!("Up {} (health: starting)", since(self.started_at)),
                Some(h) => format!("Up {} ({h})", since(self.started_at)),
                None => format!("Up {}", since(self.started_at)),
            };
        }
        if self.removing {
            return "Removal In Progress".into();
        }
        if self.dead {
            return "Dead".into();
        }
        if self.started_at.is_none() {
            return "Created".into();
        }
        if self.finished_at.is_none() {
            return String::new();
        }
        format!("Exited ({}) {} ago", self.exit_code, since(self.finished_at))
    }

    /// The `health` a `ps` filter compares: dockerd's `none` without a check.
    pub fn health_filter_value(&self) -> &str {
        self.health.as_deref().unwrap_or("none")
    }

    /// Started now (start, restart, a rescheduled copy).
    pub fn start(&mut self) {
        self.running = true;
        self.paused = false;
        self.restarting = false;
        self.started_at = Some(now_nanos());
    }

    /// Stopped now with `exit_code`.
    pub fn stop(&mut self, exit_code: i64) {
        self.running = false;
        self.paused = false;
        self.restarting = false;
        self.exit_code = exit_code;
        self.finished_at = Some(now_nanos());
        self.started_at.get_or_insert(now_nanos());
    }
}

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// go-units' `HumanDuration`.
pub fn human_duration(nanos: i128) -> String {
    let seconds = nanos / 1_000_000_000;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = ((nanos as f64) / 3.6e12 + 0.5) as i128;
    if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// An RFC 3339 time (`2026-12-01T10:04:53.112647Z`) as Unix nanoseconds; Go's zero time
/// (year 1) and anything unreadable give `None`.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    use chrono::Datelike;
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    if t.year() <= 1 {
        return None;
    }
    Some(i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go_units() {
        let s = 1_000_000_000i128;
        assert_eq!(human_duration(s / 2), "Less than a second");
        assert_eq!(human_duration(s), "1 second");
        assert_eq!(human_duration(59 * s), "59 seconds");
        assert_eq!(human_duration(61 * s), "About a minute");
        assert_eq!(human_duration(5 * 60 * s), "5 minutes");
        assert_eq!(human_duration(60 * 60 * s), "About an hour");
        assert_eq!(human_duration(3 * 3600 * s), "3 hours");
        assert_eq!(human_duration(3 * 86400 * s), "3 days");
    }

    #[test]
    fn times_parse_to_unix_nanoseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339("2026-12-01T10:04:53Z"), Some(1_796_119_493_000_000_000));
        assert_eq!(parse_rfc3339("2026-12-01T11:04:53+01:00"), Some(1_796_119_493_000_000_000));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
    }

    #[test]
    fn statuses_read_like_dockerd() {
        let now = 1_000 * 1_000_000_000i128;
        let mut r = RunState::default();
        assert_eq!((r.state(), r.status(now).as_str()), ("created", "Created"));
        r.running = true;
        r.started_at = Some(now - 3_000_000_000);
        assert_eq!((r.state(), r.status(now).as_str()), ("running", "Up 3 seconds"));
        r.health = Some("starting".into());
        assert_eq!(r.status(now), "Up 3 seconds (health: starting)");
        r.paused = true;
        assert_eq!((r.state(), r.status(now).as_str()), ("paused", "Up 3 seconds (Paused)"));
        r.running = false;
        r.paused = false;
        r.exit_code = 3;
        r.finished_at = Some(now - 120_000_000_000);
        assert_eq!((r.state(), r.status(now).as_str()), ("exited", "Exited (3) 2 minutes ago"));
    }
}
