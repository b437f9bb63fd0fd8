//! Sharding: N instances split any number of digests with no coordination, each polling the
//! digests whose first 16 hex characters, read as a u64, are its index modulo N.

/// A `--shard.total`/`--shard.index` pair .
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Number of instances.
    pub total: u64,
    /// This instance's index, `0..total`.
    pub index: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { total: 1, index: 0 }
    }
}

impl Shard {
    /// Validates the flags; without an index and with `total > 1`, the index comes from a
    /// StatefulSet-style hostname suffix (`exporter-3` → 3).
    pub fn from_flags(
        total: u64,
        index: Option<u64>,
        hostname: Option<&str>,
    ) -> Result<Shard, String> {
        if total == 0 {
            return Err("--shard.total must be at least 1".into());
        }
        let index = match index {
            Some(i) => i,
            None if total == 1 => 0,
            None => {
                let host = hostname.unwrap_or_default();
                host.rsplit_once('-')
                    .and_then(|(_, n)| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "--shard.total is {total} but --shard.index is not set and the hostname {host:?} does not end in -N"
                        )
                    })?
            }
        };
        if index >= total {
            return Err(format!(
                "--shard.index {index} is out of range for --shard.total {total} (0..{})",
                total - 1
            ));
        }
        Ok(Shard { total, index })
    }

    /// True when this instance polls `digest`: its first 16 hex characters, as a u64, modulo
    /// the shard count.
    pub fn owns(&self, digest: &str) -> bool {
        if self.total <= 1 {
            return true;
        }
        digest
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .is_some_and(|v| v % self.total == self.index)
    }
}

/// The machine's host name, for the shard index.
pub fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_flags_and_hostnames() {
        assert_eq!(Shard::from_flags(1, None, None), Ok(Shard::default()));
        assert_eq!(
            Shard::from_flags(3, None, Some("sas-exporter-2")),
            Ok(Shard { total: 3, index: 2 })
        );
        assert_eq!(
            Shard::from_flags(3, Some(1), Some("whatever")),
            Ok(Shard { total: 3, index: 1 })
        );
        assert_eq!(
            Shard::from_flags(3, None, Some("laptop")),
            Err("--shard.total is 3 but --shard.index is not set and the hostname \"laptop\" does not end in -N".into())
        );
        assert_eq!(
            Shard::from_flags(3, Some(3), None),
            Err("--shard.index 3 is out of range for --shard.total 3 (0..2)".into())
        );
        assert!(Shard::from_flags(0, None, None).is_err());
    }

    #[test]
    fn every_digest_has_exactly_one_owner() {
        for total in 1..6u64 {
            let shards: Vec<Shard> = (0..total).map(|index| Shard { total, index }).collect();
            for i in 0..500u64 {
                let d = format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
                assert_eq!(shards.iter().filter(|s| s.owns(&d)).count(), 1, "{d}");
            }
        }
        let s = Shard { total: 4, index: 3 };
        // 0x...0003 % 4 == 3.
        assert!(s.owns(&format!("{:016x}{}", 3, "0".repeat(48))));
        assert!(!s.owns(&format!("{:016x}{}", 4, "0".repeat(48))));
    }
}
