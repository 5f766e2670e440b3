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
//! which pages of its memory were resident and which of those it had
//! written (from `/proc/self/pagemap`). Every later instance gets those
//! pages populated up front with one `madvise` call per run of pages: the
//! written ones as private copies, the read ones mapped shared. That is the
//! work the faults would have done, without the faults or the interrupts,
//! and it does not change a byte of memory. Off Linux, or on a kernel
//! without `MADV_POPULATE_WRITE` (before 5.14), nothing is recorded or
//! populated.
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

impl PageProfile {
    /// Records which pages of `memory` are resident now, or `None` where the
    /// kernel cannot say (no `/proc/self/pagemap`).
    pub(crate) fn record(memory: &[u8]) -> Option<Self> {
        let states = platform::page_states(memory)?;
        Some(Self::from_states(&states, platform::page_size()))
    }

    fn from_states(states: &[PageState], page: usize) -> Self {
        let mut profile = Self::default();
        let mut start = 0;
        for end in 1..=states.len() {
            if end < states.len() && states[end] == states[start] {
                continue;
            }
            let range = start * page..end * page;
            match states[start] {
                PageState::Absent => {}
                PageState::Shared => profile.read.push(range),
                PageState::Private => profile.written.push(range),
            }
            start = end;
        }
        profile
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_pages_become_ranges() {
        use PageState::{Absent, Private, Shared};
        let states = [Private, Private, Absent, Shared, Shared, Private, Absent];
        let profile = PageProfile::from_states(&states, 10);
        assert_eq!(profile.written, vec![0..20, 50..60]);
        assert_eq!(profile.read, vec![30..50]);
        assert_eq!(profile.bytes(), (30, 20));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn written_pages_are_recorded_and_populating_keeps_their_bytes() {
        let page = platform::page_size();
        // A page-aligned window of a fresh zeroed buffer (large enough for
        // the allocator to map it untouched), one page of it written.
        let mut buffer = vec![0u8; page * 64];
        let offset = buffer.as_ptr().align_offset(page);
        let window = &mut buffer[offset..offset + page * 4];
        window[page] = 7;
        let profile = PageProfile::record(window).expect("pagemap is readable");
        assert!(
            profile.written.iter().any(|pages| pages.contains(&page)),
            "{profile:?}"
        );
        assert!(
            !profile
                .written
                .iter()
                .any(|pages| pages.contains(&(3 * page))),
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
}
