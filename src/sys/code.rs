//! Code addresses: naming a function so that another process running the same binary can call it,
//! and making values of zero-sized function types. Platform-neutral, but `unsafe`, so it lives here.

/// Makes a value of the zero-sized type `F` without having one.
///
/// Used for `fn` items and non-capturing closures, whose behaviour is entirely in their type.
pub(crate) fn conjure_zst<F: Copy>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target must be a fn item or a closure that captures nothing; use Process::fork for a capturing closure"
        )
    };
    // SAFETY: `F` is zero-sized (checked at compile time above), so there are no bytes to
    // initialize; the callers only use it for fn item and closure types, which are inhabited and
    // carry no data.
    unsafe { std::mem::zeroed() }
}

/// The signed distance from `anchor` to `function`, both code addresses of this binary.
pub(crate) fn offset_between(anchor: usize, function: usize) -> i64 {
    (function as i64).wrapping_sub(anchor as i64)
}

/// The function pointer of type `P` at `offset` from `anchor`.
///
/// # Safety
///
/// `offset` must have been computed by [`offset_between`] from the same anchor function and a
/// function of type `P`, in a process running the same executable file as this one.
pub(crate) unsafe fn function_at<P: Copy>(anchor: usize, offset: i64) -> P {
    const { assert!(std::mem::size_of::<P>() == std::mem::size_of::<usize>(), "P must be a function pointer") };
    let address = (anchor as i64).wrapping_add(offset) as usize;
    // SAFETY: by the caller's guarantee, `address` is the address of a function of type `P` in this
    // same binary, so the pointer has the right signature and points at code.
    unsafe { std::mem::transmute_copy::<usize, P>(&address) }
}
