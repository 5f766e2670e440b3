//! The few calls into the operating system that Rust's standard library and
//! wasmtime's safe API lack. With the call of [`release`] in
//! `engine/pages.rs`, whose condition only that module can check, this is
//! all of the host's `unsafe` code.
//!
//! * Which pages of a range of our memory are resident, and which of those
//!   private (`/proc/self/pagemap`), populating pages ahead of their first
//!   use (`madvise` with `MADV_POPULATE_READ` or `_WRITE`, Linux 5.14), and
//!   dropping pages (`MADV_DONTNEED`), for `engine/pages.rs`.
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
    /// Mapped from a file or shared memory (an image page not yet written),
    /// or the zero page that reads of untouched memory map.
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

    /// The `pagemap` bits: present, file-backed or shared, and mapped only
    /// here (the shared zero page that reads of untouched anonymous memory
    /// map is neither file-backed nor exclusive).
    const PRESENT: u64 = 1 << 63;
    const FILE_OR_SHARED: u64 = 1 << 61;
    const EXCLUSIVE: u64 = 1 << 56;

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
                } else if bits & FILE_OR_SHARED == 0 && bits & EXCLUSIVE != 0 {
                    PageState::Private
                } else {
                    PageState::Shared
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

    /// Drops the pages of `range` (bytes from the start of `memory`) from
    /// this process: their next access maps them afresh from what backs
    /// the mapping (the file of a private file mapping, zeros for
    /// anonymous memory). Returns whether the kernel did.
    ///
    /// # Safety
    ///
    /// The bytes of `range` must equal what backs the mapping there, so
    /// that dropping them changes no byte that anyone reads later.
    pub(crate) unsafe fn release(memory: &mut [u8], range: Range<usize>) -> bool {
        if range.is_empty() {
            return true;
        }
        let Some(pages) = memory.get_mut(range) else {
            return false;
        };
        // SAFETY: `pages` is borrowed mutably, so nothing else reads or
        // writes it meanwhile, and the caller promises that its bytes are
        // what the mapping gives back. A range that is not page-aligned or
        // not mapped is refused with an error, never touched.
        let status =
            unsafe { libc::madvise(pages.as_mut_ptr().cast(), pages.len(), libc::MADV_DONTNEED) };
        status == 0
    }

    /// Returns the free pages of glibc's heap to the kernel: SQLite's
    /// memory, and everything else when the binary's global allocator is
    /// glibc's (the `go-go-objects` binary uses mimalloc, which returns
    /// freed pages by itself).
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

    /// Refused here.
    ///
    /// # Safety
    ///
    /// None needed: nothing is done.
    pub(crate) unsafe fn release(_memory: &mut [u8], _range: Range<usize>) -> bool {
        false
    }

    /// Nothing to do here.
    pub(crate) fn trim_heap() {}
}

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::{page_size, page_states, populate, release, trim_heap};
#[cfg(target_os = "linux")]
pub(crate) use linux::{page_size, page_states, populate, release, trim_heap};
