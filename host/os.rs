//! The few calls into the operating system that Rust's standard library and
//! wasmtime's safe API lack; the only module of the host with `unsafe`
//! code.
//!
//! * Which pages of a range of our memory are resident, and which of those
//!   private (`/proc/self/pagemap`), and populating pages ahead of their
//!   first use (`madvise` with `MADV_POPULATE_READ` or `_WRITE`, Linux
//!   5.14), for `engine/prefault.rs`.
//! * Giving freed heap memory back to the kernel (`malloc_trim`, glibc),
//!   after idle actors closed their databases.
//!
//! Elsewhere these do nothing, or say they cannot.

#![allow(
    unsafe_code,
    reason = "system calls without a safe wrapper; see each SAFETY"
)]

/// What the kernel says about one page of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageState {
    /// Not mapped yet: the first access faults.
    Absent,
    /// Mapped from a file or shared memory (an image page not yet written).
    Shared,
    /// A private page of this process (written, or anonymous).
    Private,
}

#[cfg(target_os = "linux")]
mod linux {
    use std::{
        fs::File,
        io::{Read, Seek, SeekFrom},
        ops::Range,
    };

    use super::PageState;

    /// The `pagemap` bits: present, and file-backed or shared.
    const PRESENT: u64 = 1 << 63;
    const FILE_OR_SHARED: u64 = 1 << 61;

    /// The size of a memory page.
    pub(crate) fn page_size() -> usize {
        // SAFETY: sysconf reads a constant of the system and has no
        // preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096)
    }

    /// The state of each whole page of `memory`, which must start on a page
    /// boundary; `None` when the kernel cannot say.
    pub(crate) fn page_states(memory: &[u8]) -> Option<Vec<PageState>> {
        let page = page_size();
        let start = memory.as_ptr() as usize;
        if !start.is_multiple_of(page) {
            return None;
        }
        let mut entries = vec![0u8; memory.len() / page * 8];
        let mut pagemap = File::open("/proc/self/pagemap").ok()?;
        pagemap
            .seek(SeekFrom::Start((start / page * 8) as u64))
            .ok()?;
        pagemap.read_exact(&mut entries).ok()?;
        let states = entries
            .chunks_exact(8)
            .map(|entry| {
                let bits = u64::from_le_bytes(entry.try_into().expect("chunks of eight"));
                if bits & PRESENT == 0 {
                    PageState::Absent
                } else if bits & FILE_OR_SHARED != 0 {
                    PageState::Shared
                } else {
                    PageState::Private
                }
            })
            .collect();
        Some(states)
    }

    /// Populates the pages of `range` (bytes from `base`): as private copies
    /// when `write`, else mapped as they are. Returns whether the kernel
    /// did.
    pub(crate) fn populate(base: *mut u8, range: Range<usize>, write: bool) -> bool {
        if range.is_empty() {
            return true;
        }
        let advice = if write {
            libc::MADV_POPULATE_WRITE
        } else {
            libc::MADV_POPULATE_READ
        };
        let start = base.wrapping_add(range.start);
        // SAFETY: populating only faults pages in (private copies for
        // writes), exactly as first accesses to them would: no byte of
        // memory and no mapping changes, so no reference into the memory is
        // invalidated. A range that is not mapped (or not writable, for a
        // write) is refused with an error, never touched.
        let status = unsafe { libc::madvise(start.cast(), range.len(), advice) };
        status == 0
    }

    /// Returns the heap's free pages to the kernel.
    #[cfg(target_env = "gnu")]
    pub(crate) fn trim_heap() {
        // SAFETY: malloc_trim only releases memory that no allocation
        // holds; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// Returns the heap's free pages to the kernel (not with this libc).
    #[cfg(not(target_env = "gnu"))]
    pub(crate) fn trim_heap() {}
}

#[cfg(not(target_os = "linux"))]
mod elsewhere {
    use std::ops::Range;

    use super::PageState;

    /// The size of a memory page, as far as this module cares.
    pub(crate) fn page_size() -> usize {
        4096
    }

    /// Unknown here.
    pub(crate) fn page_states(_memory: &[u8]) -> Option<Vec<PageState>> {
        None
    }

    /// Refused here.
    pub(crate) fn populate(_base: *mut u8, _range: Range<usize>, _write: bool) -> bool {
        false
    }

    /// Nothing to do here.
    pub(crate) fn trim_heap() {}
}

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::{page_size, page_states, populate, trim_heap};
#[cfg(target_os = "linux")]
pub(crate) use linux::{page_size, page_states, populate, trim_heap};
