//! Value parsers for durations and byte sizes.

use std::time::Duration;

/// Parses `250ms`, `2s`, `5m`, `1h30m`; `0` is zero (which disables the
/// setting it is given to).
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (expected a duration such as 250ms, 2s or 5m, or 0)"))
}

/// Parses a byte count: `1048576`, `512KiB`, `128MiB`, `1GiB` (also `KB`,
/// `MB`, `GB` and `K`, `M`, `G`, all powers of 1024).
///
/// # Errors
///
/// A message saying what is accepted.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte size such as 128MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The smallest actor memory cap: the guest's image (with its 8 MiB C
/// stack) and QuickJS need some before any bundle runs.
pub(super) const MIN_ACTOR_MEMORY: u64 = crate::config::MIN_MAX_MEMORY;

/// The largest actor memory cap: all a 32-bit wasm memory can address.
pub(super) const MAX_ACTOR_MEMORY: u64 = 4 << 30;

/// Parses an actor memory cap: a byte size from 16MiB to 4GiB.
///
/// # Errors
///
/// A message saying what is accepted.
pub(super) fn parse_actor_memory(text: &str) -> Result<u64, String> {
    let bytes = parse_byte_size(text)?;
    if !(MIN_ACTOR_MEMORY..=MAX_ACTOR_MEMORY).contains(&bytes) {
        return Err(format!(
            "{text:?} is outside 16MiB to 4GiB (a 32-bit wasm memory holds at most 4GiB)"
        ));
    }
    Ok(bytes)
}

/// Parses a wasm stack size: a byte size from 256KiB to 8MiB. The guest's
/// C stack, in its linear memory, is 8 MiB; a native stack much larger
/// than that would let recursion run past the end of the C stack first,
/// which traps as a bad memory access instead of a stack overflow.
///
/// # Errors
///
/// A message saying what is accepted.
pub(super) fn parse_wasm_stack(text: &str) -> Result<u64, String> {
    let bytes = parse_byte_size(text)?;
    if !((256 << 10)..=crate::config::MAX_WASM_STACK as u64).contains(&bytes) {
        return Err(format!("{text:?} is outside 256KiB to 8MiB"));
    }
    Ok(bytes)
}

/// `--max-total-memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMemory {
    /// Half of the memory of the machine, or of its container.
    Auto,
    /// This many bytes; 0 is no bound.
    Bytes(u64),
}

impl TotalMemory {
    /// The bound in bytes, `None` for none; `Auto` is `None` (with a
    /// warning) when the machine's memory cannot be read.
    pub fn resolve(self) -> Option<u64> {
        match self {
            Self::Bytes(0) => None,
            Self::Bytes(bytes) => Some(bytes),
            Self::Auto => {
                let total = available_memory();
                if total.is_none() {
                    tracing::warn!(
                        "cannot read the machine's memory: --max-total-memory auto sets no bound"
                    );
                }
                total.map(|bytes| bytes / 2)
            }
        }
    }
}

/// The memory this process may use: the machine's (`MemTotal`), or its
/// cgroup's `memory.max` when that is lower.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let machine = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    Some(cgroup.map_or(machine, |limit| limit.min(machine)))
}

/// Parses `--max-total-memory`: `auto`, or a byte size.
///
/// # Errors
///
/// As [`parse_byte_size`].
pub(super) fn parse_total_memory(text: &str) -> Result<TotalMemory, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(TotalMemory::Auto);
    }
    parse_byte_size(text).map(TotalMemory::Bytes)
}

/// Checks a log filter (`info`, `go_go_objects=debug,warn`).
///
/// # Errors
///
/// The filter parser's complaint.
pub(super) fn parse_log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("{e} (expected a level such as info or debug, or directives)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn checks_memory_caps_and_log_filters() {
        assert_eq!(parse_actor_memory("128MiB").unwrap(), 128 << 20);
        for bad in ["0", "1MiB", "8MiB", "5GiB", "100GiB"] {
            assert!(parse_actor_memory(bad).is_err(), "{bad}");
        }
        assert!(parse_log_filter("go_go_objects=debug,warn").is_ok());
        assert!(parse_log_filter("???garbage").is_err());
    }

    #[test]
    fn parses_byte_sizes() {
        assert_eq!(parse_byte_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_byte_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_byte_size("1000").unwrap(), 1000);
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
    }
}
