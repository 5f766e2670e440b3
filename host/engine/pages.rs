//! Prefaulting new instances with the pages actors are known to touch.
//!
//! An actor's linear memory starts as a copy-on-write mapping of its image.
//! Each page the actor first reads and then writes (QuickJS updating a
//! reference count, say) costs two page faults, and the second, which
//! replaces the shared page with a private copy, makes the kernel flush that
//! address from every CPU's TLB with an interrupt. Measured with `perf` on a
//! server taking new objects, those faults were a third of all its CPU time.
//!
//! A [`PageProfile`] records, from the first actor that served a dispatch,
//! which pages of the memory it started with were resident and which of
//! those it had written (from `/proc/self/pagemap`); a profile of more than
//! a megabyte of written pages is not used (the next actors are tried). Every later instance gets those
//! pages populated up front with one `madvise` call per run of pages: the
//! written ones as private copies, the read ones mapped shared. That is the
//! work the faults would have done, without the faults or the interrupts,
//! and it does not change a byte of memory. Off Linux, or on a kernel
//! without `MADV_POPULATE_WRITE` (before 5.14), nothing is recorded or
//! populated.
//!
//! Idle actors give pages back: [`Pristine::release_unchanged`] drops every
//! resident page of an actor's memory that holds exactly what the image
//! holds there (a page only read, or written back to what it was, as
//! QuickJS's reference counts are), so that its next access maps the
//! image's shared page again. What an idle actor keeps is what it changed.
//!
//! The system calls themselves are in [`crate::os`].

use std::ops::Range;

use crate::os as platform;

/// Which pages of a guest memory an actor used, as byte ranges from the
/// memory's start, in whole pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageProfile {
    /// Pages the actor wrote (private copies).
    written: Vec<Range<usize>>,
    /// Pages the actor only read (still shared with the image).
    read: Vec<Range<usize>>,
}

pub(crate) use platform::PageState;

/// The most written bytes a profile may name to be applied.
const MAX_WRITTEN: usize = 1 << 20;

/// The most read bytes a profile may name to be applied.
const MAX_READ: usize = 4 << 20;

impl PageProfile {
    /// Records which pages of `memory` are resident now, or `None` where the
    /// kernel cannot say (no `/proc/self/pagemap`).
    pub(crate) fn record(memory: &[u8]) -> Option<Self> {
        let states = platform::page_states(memory)?;
        Some(Self::from_states(&states, platform::page_size()))
    }

    fn from_states(states: &[PageState], page: usize) -> Self {
        let mut profile = Self::default();
        for (state, range) in runs(states, page) {
            match state {
                PageState::Absent => {}
                PageState::Shared => profile.read.push(range),
                PageState::Private => profile.written.push(range),
            }
        }
        profile
    }

    /// Whether the profile is small enough to apply to every new actor: a
    /// first dispatch that happened to touch megabytes (deep recursion, a
    /// large table built in the image's free space) would otherwise make
    /// every later actor as large.
    pub(crate) fn is_typical(&self) -> bool {
        let (written, read) = self.bytes();
        written <= MAX_WRITTEN && read <= MAX_READ
    }

    /// Bytes of memory the profile names (written, read).
    pub(crate) fn bytes(&self) -> (usize, usize) {
        let total = |ranges: &[Range<usize>]| ranges.iter().map(ExactSizeIterator::len).sum();
        (total(&self.written), total(&self.read))
    }

    /// Populates the profile's pages of a memory that starts at `base` and
    /// is `len` bytes long (ranges past `len` are cut off). Returns whether
    /// the kernel did it; a refusal changes nothing but speed.
    pub(crate) fn populate(&self, base: *mut u8, len: usize) -> bool {
        let clip = |range: &Range<usize>| range.start.min(len)..range.end.min(len);
        let written = self.written.iter().map(clip);
        let read = self.read.iter().map(clip);
        written
            .into_iter()
            .all(|r| platform::populate(base, r, true))
            && read.into_iter().all(|r| platform::populate(base, r, false))
    }
}

/// The runs of equal values in `pages` (one per page of `page` bytes), each
/// with the byte range it covers.
fn runs<T: Copy + PartialEq>(pages: &[T], page: usize) -> Vec<(T, Range<usize>)> {
    let mut runs = Vec::new();
    let mut start = 0;
    for end in 1..=pages.len() {
        if end == pages.len() || pages[end] != pages[start] {
            runs.push((pages[start], start * page..end * page));
            start = end;
        }
    }
    runs
}

/// The memory of an instance that never ran, known to be a copy-on-write
/// mapping of its image: what a page of a new instance of the same image
/// holds until it is written, and what dropping that page gives back.
pub(crate) struct Pristine<'a> {
    memory: &'a [u8],
}

impl<'a> Pristine<'a> {
    /// `memory` of an instance that never ran, if it is mapped from its
    /// image copy-on-write (wasmtime's memory images on Linux): the first
    /// page that holds data, once read, must be a page of the image file.
    /// Otherwise (memory initialized by copying), dropping pages would
    /// lose data, and `None` says so.
    pub(crate) fn check(memory: &'a [u8]) -> Option<Self> {
        let page = platform::page_size();
        if !(memory.as_ptr() as usize).is_multiple_of(page) {
            return None;
        }
        // Nothing may have written it: its bytes must be the image's.
        let states = platform::page_states(memory)?;
        if states.contains(&PageState::Private) {
            return None;
        }
        let index = memory
            .chunks_exact(page)
            .position(|bytes| bytes.iter().any(|b| *b != 0))?;
        let states = platform::page_states(&memory[index * page..(index + 1) * page])?;
        (states == [PageState::Shared]).then_some(Self { memory })
    }

    /// Drops the resident pages of `memory` (an instance of the same image)
    /// whose bytes equal the pristine ones at the same offsets (zeros past
    /// the pristine memory's end), and those that lie wholly in `dead`,
    /// whatever they hold; returns how many bytes it gave back.
    ///
    /// `dead` is the part of the memory that holds nothing anyone will read
    /// before writing it again: the guest's stack below its stack pointer,
    /// between calls.
    pub(crate) fn release_unchanged(&self, memory: &mut [u8], dead: Range<usize>) -> usize {
        let page = platform::page_size();
        let Some(states) = platform::page_states(memory) else {
            return 0;
        };
        let zeros = vec![0u8; page];
        let unchanged = |index: usize, bytes: &[u8]| {
            let pristine = self
                .memory
                .get(index * page..(index + 1) * page)
                .unwrap_or(&zeros);
            bytes == pristine
        };
        let releasable: Vec<bool> = memory
            .chunks_exact(page)
            .zip(&states)
            .enumerate()
            .map(|(index, (bytes, state))| {
                let within_dead = dead.start <= index * page && (index + 1) * page <= dead.end;
                *state != PageState::Absent && (within_dead || unchanged(index, bytes))
            })
            .collect();
        let mut released = 0;
        for (unchanged, run) in runs(&releasable, page) {
            #[allow(unsafe_code, reason = "dropping pages; see the SAFETY comment")]
            // SAFETY: every page of `run` holds the pristine bytes, which
            // are what the mapping gives back when a page is dropped: the
            // image's bytes where `check` found the image mapped
            // copy-on-write, and zeros in the anonymous memory around and
            // past it (where the pristine instance reads zeros too). Or it
            // lies in `dead`, whose bytes nobody reads before writing them.
            let given_back = unchanged && unsafe { platform::release(memory, run.clone()) };
            if given_back {
                released += run.len();
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_of_megabytes_is_not_typical() {
        use PageState::{Absent, Private, Shared};
        let page = 4096;
        let small = PageProfile::from_states(&[Private, Shared, Absent], page);
        assert!(small.is_typical());
        let written = vec![Private; MAX_WRITTEN / page + 1];
        assert!(!PageProfile::from_states(&written, page).is_typical());
        let read = vec![Shared; MAX_READ / page + 1];
        assert!(!PageProfile::from_states(&read, page).is_typical());
    }

    #[test]
    fn runs_of_pages_become_ranges() {
        use PageState::{Absent, Private, Shared};
        let states = [Private, Private, Absent, Shared, Shared, Private, Absent];
        let profile = PageProfile::from_states(&states, 10);
        assert_eq!(profile.written, vec![0..20, 50..60]);
        assert_eq!(profile.read, vec![30..50]);
        assert_eq!(profile.bytes(), (30, 20));
    }

    /// A page-aligned window of `pages` pages inside `buffer`, which must
    /// be at least a page longer.
    fn aligned_window(buffer: &mut [u8], pages: usize) -> &mut [u8] {
        let page = platform::page_size();
        let offset = buffer.as_ptr().align_offset(page);
        &mut buffer[offset..offset + page * pages]
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn written_pages_are_recorded_and_populating_keeps_their_bytes() {
        let page = platform::page_size();
        // One page written (the others may or may not be resident: the
        // allocator may reuse memory).
        let mut buffer = vec![0u8; page * 64];
        let window = aligned_window(&mut buffer, 4);
        window[page] = 7;
        let profile = PageProfile::record(window).expect("pagemap is readable");
        assert!(
            profile.written.iter().any(|pages| pages.contains(&page)),
            "{profile:?}"
        );
        assert!(profile.populate(window.as_mut_ptr(), window.len()));
        assert_eq!(window[page], 7);
        assert!(
            window
                .iter()
                .enumerate()
                .all(|(i, b)| *b == u8::from(i == page) * 7)
        );
    }

    /// Memory that is not mapped from a file (initialized by copying) must
    /// never count as pristine: dropping its pages would lose its bytes.
    #[test]
    fn anonymous_memory_is_not_pristine() {
        let page = platform::page_size();
        let mut buffer = vec![0u8; page * 64];
        let window = aligned_window(&mut buffer, 4);
        window[page + 1] = 9;
        assert!(Pristine::check(window).is_none());
    }
}
