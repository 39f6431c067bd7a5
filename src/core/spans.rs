//! The spans a loop over rows in passes of a fixed size visits: `(start, len)` with every `len`
//! equal to the size except perhaps the last, which takes what is left.
//!
//! Training batches, evaluation passes, the Fisher's and MAS's passes and the validation loss's
//! chunks all walk their rows this way; one iterator keeps the last short span and the stop
//! condition in one place.

use std::ops::{Add, Sub};

/// `(start, len)` spans covering `0..n` in order, `size` rows each (the last one shorter when
/// `size` does not divide `n`); none when `n` is 0. A `size` of 0 is taken as 1, so the walk
/// always ends.
pub fn row_spans<T>(n: T, size: T) -> impl Iterator<Item = (T, T)>
where
    T: Copy + Ord + From<u8> + Add<Output = T> + Sub<Output = T>,
{
    let size = size.max(T::from(1));
    let mut start = T::from(0);
    std::iter::from_fn(move || {
        if start >= n {
            return None;
        }
        let len = size.min(n - start);
        let span = (start, len);
        start = start + len;
        Some(span)
    })
}

#[cfg(test)]
mod tests {
    use super::row_spans;

    #[test]
    fn spans_cover_the_rows_in_order_with_a_short_last_one() {
        let spans: Vec<(i64, i64)> = row_spans(10, 4).collect();
        assert_eq!(spans, [(0, 4), (4, 4), (8, 2)]);
        let spans: Vec<(usize, usize)> = row_spans(8, 4).collect();
        assert_eq!(spans, [(0, 4), (4, 4)]);
        assert_eq!(row_spans(3i64, 100).collect::<Vec<_>>(), [(0, 3)]);
        assert_eq!(row_spans(0i64, 5).count(), 0);
        assert_eq!(
            row_spans(3i64, 0).collect::<Vec<_>>(),
            [(0, 1), (1, 1), (2, 1)]
        );
    }
}
