//! The open-files budget. Each engine holds an event stream and one kept-alive connection, so
//! the soft `RLIMIT_NOFILE` (often 1024) bounds how many engines a manager serves. Like every
//! Go program since Go 1.19 (go.dev/issue/46279), the manager raises it to the hard limit at
//! start, and says how many engines that allows.

/// Descriptors per engine in steady state: its event stream and one kept-alive connection.
pub const FILES_PER_ENGINE: u64 = 2;

/// Descriptors kept for everything else: clients, peers, etcd, logs, the data directory.
pub const RESERVED_FILES: u64 = 256;

/// The soft limit in force, and what it was before the manager raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit now.
    pub limit: u64,
    /// The soft limit found at start, when it was raised.
    pub raised_from: Option<u64>,
}

impl OpenFiles {
    /// Raises the soft limit to the hard one; on failure, keeps what it finds.
    pub fn raise() -> OpenFiles {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) if limit > before => OpenFiles { limit, raised_from: Some(before) },
            Ok(limit) => OpenFiles { limit, raised_from: None },
            Err(e) => {
                tracing::warn!(error = %e, limit = before, "Cannot raise the open-files limit.");
                OpenFiles { limit: before, raised_from: None }
            }
        }
    }

    /// How many engines the limit allows.
    pub fn engines_allowed(&self) -> u64 {
        self.limit.saturating_sub(RESERVED_FILES) / FILES_PER_ENGINE
    }

    /// `docker info`'s line: the limit and the engines it allows.
    pub fn describe(&self) -> String {
        format!("{} (about {} engines)", self.limit, self.engines_allowed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_default_allows_a_few_hundred_engines() {
        let files = OpenFiles { limit: 1024, raised_from: None };
        assert_eq!(files.engines_allowed(), 384);
        assert_eq!(OpenFiles { limit: 100, raised_from: None }.engines_allowed(), 0);
    }
}
