//! Chunk planning: which AR-N graphs run a prompt of `n` tokens starting at position `start` of a
//! context of `ctx` positions. Pure, so the scheduler can plan (and place) a request without
//! touching the NPU.

use crate::error::{Error, Result};

/// Chunk sizes to run `n` tokens starting at `start`: at each step the largest size that holds
/// only real tokens, else the smallest that holds the rest (the last chunk is padded); every
/// chunk must end inside the context (`pos + N ≤ ctx`), since an AR-N graph has `ctx − N` past
/// slots.
pub fn plan_chunks(sizes: &[usize], ctx: usize, start: usize, n: usize) -> Result<Vec<usize>> {
    if start + n > ctx {
        return Err(Error::InvalidInput(format!(
            "context overflow: {} positions needed, context holds {ctx}",
            start + n
        )));
    }
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let (mut pos, mut plan) = (start, Vec::new());
    while pos < start + n {
        let rest = start + n - pos;
        let fits: Vec<usize> = sorted.iter().copied().filter(|&c| pos + c <= ctx).collect();
        let pick = fits
            .iter()
            .rev()
            .find(|&&c| c <= rest)
            .or_else(|| fits.iter().find(|&&c| c >= rest))
            .copied()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no chunk size in {sizes:?} fits {rest} tokens at position {pos} of context \
                     {ctx}"
                ))
            })?;
        plan.push(pick);
        pos += pick.min(rest);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_full_chunks_then_smallest_padded() {
        assert_eq!(
            plan_chunks(&[32, 128], 1024, 0, 300).unwrap(),
            [128, 128, 32, 32]
        );
        assert_eq!(plan_chunks(&[128, 32], 1024, 0, 20).unwrap(), [32]);
        assert_eq!(plan_chunks(&[32, 128], 1024, 0, 128).unwrap(), [128]);
        assert_eq!(plan_chunks(&[8], 64, 5, 9).unwrap(), [8, 8]);
    }

    #[test]
    fn chunks_must_end_inside_the_context() {
        // At 1000 of 1024 neither AR-32 nor AR-128 ends inside the context.
        assert!(plan_chunks(&[32, 128], 1024, 1000, 10).is_err());
        assert_eq!(plan_chunks(&[32, 128], 1024, 990, 10).unwrap(), [32]);
        // A tail shorter than the remaining room uses the small graph near the end.
        assert_eq!(plan_chunks(&[8, 32], 64, 40, 20).unwrap(), [8, 8, 8]);
        let e = plan_chunks(&[8], 64, 60, 3).unwrap_err().to_string();
        assert!(e.contains("position 60"), "{e}");
        let e = plan_chunks(&[8], 64, 60, 10).unwrap_err().to_string();
        assert!(e.contains("context overflow"), "{e}");
    }
}
