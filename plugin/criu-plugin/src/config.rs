//! The plugin's settings, from CRIU's environment (docs/PLUGIN.md lists them with defaults).

use criu_cet::check::Coverage;

/// The bitmap's start address, when it cannot be found otherwise.
pub const ENV_BITMAP_ADDR: &str = "CRIU_CET_BITMAP_ADDR";
/// `kill` (default) or `warn`: what happens to a task whose restore failed late.
pub const ENV_ON_ERROR: &str = "CRIU_CET_ON_ERROR";
/// `warn` (default) or `strict`: coverage narrower than the host's address space.
pub const ENV_COVERAGE: &str = "CRIU_CET_COVERAGE";

/// What to do with a task whose bitmap could not be restored (CRIU ignores the hook's result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Kill it, so that it never runs with a wrong bitmap.
    Kill,
    /// Leave it running, with an error in the log.
    Warn,
}

/// Every setting.
#[derive(Clone, Debug)]
pub struct Config {
    /// [`ENV_BITMAP_ADDR`].
    pub bitmap_addr: Option<u64>,
    /// [`ENV_ON_ERROR`].
    pub on_error: OnError,
    /// [`ENV_COVERAGE`].
    pub coverage: Coverage,
}

impl Config {
    /// Reads the settings; an unknown value is an error naming the variable and what it takes.
    pub fn from_env() -> Result<Config, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let var = |k: &str| var(k).filter(|v| !v.is_empty());
        let bitmap_addr = match var(ENV_BITMAP_ADDR) {
            None => None,
            Some(v) => {
                Some(criu_cet_format::meta::parse_hex(&v).map_err(|e| format!("{ENV_BITMAP_ADDR}: {e}"))?)
            }
        };
        let on_error = match var(ENV_ON_ERROR).as_deref() {
            None | Some("kill") => OnError::Kill,
            Some("warn") => OnError::Warn,
            Some(v) => return Err(format!("{ENV_ON_ERROR}={v:?}: expected \"kill\" (default) or \"warn\"")),
        };
        let coverage = match var(ENV_COVERAGE).as_deref() {
            None | Some("warn") => Coverage::Warn,
            Some("strict") => Coverage::Strict,
            Some(v) => {
                return Err(format!("{ENV_COVERAGE}={v:?}: expected \"warn\" (default) or \"strict\""))
            }
        };
        Ok(Config { bitmap_addr, on_error, coverage })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_every_value() {
        let c = with(&[]).unwrap();
        assert_eq!((c.bitmap_addr, c.on_error, c.coverage), (None, OnError::Kill, Coverage::Warn));
        let c =
            with(&[(ENV_BITMAP_ADDR, "0x7f0000000000"), (ENV_ON_ERROR, "warn"), (ENV_COVERAGE, "strict")])
                .unwrap();
        assert_eq!(
            (c.bitmap_addr, c.on_error, c.coverage),
            (Some(0x7f00_0000_0000), OnError::Warn, Coverage::Strict)
        );
        assert!(with(&[(ENV_ON_ERROR, "ignore")]).unwrap_err().contains("CRIU_CET_ON_ERROR=\"ignore\""));
        assert!(with(&[(ENV_COVERAGE, "x")]).unwrap_err().contains("CRIU_CET_COVERAGE"));
        assert!(with(&[(ENV_BITMAP_ADDR, "zz")]).unwrap_err().contains("CRIU_CET_BITMAP_ADDR"));
    }
}
