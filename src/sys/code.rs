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

/// A plain `fn()` named so that another process of the same program can call it: its offset from
/// an anchor, signed with the program's authkey (HMAC-SHA256). Only processes holding the key (the
/// program's own tree, all running this binary, as the launch protocol checks) can make one that
/// resolves, so a forged offset from anyone else is refused instead of called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SignedFn {
    offset: i64,
    mac: [u8; 32],
}

fn signed_fn_anchor() {}

/// The HMAC of `offset` under `key`, before finalization.
#[allow(clippy::unreachable, reason = "HMAC takes keys of any length: new_from_slice cannot fail")]
fn signed_fn_mac(key: &[u8], offset: i64) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"multiproc signed fn\0");
    mac.update(&offset.to_le_bytes());
    mac
}

impl SignedFn {
    /// Names `function`, signed with `key`.
    pub(crate) fn sign(function: fn(), key: &[u8]) -> SignedFn {
        let offset = offset_between(signed_fn_anchor as fn() as usize, function as usize);
        use hmac::Mac;
        SignedFn { offset, mac: signed_fn_mac(key, offset).finalize().into_bytes().into() }
    }

    /// The function, if the signature is `key`'s.
    pub(crate) fn resolve(&self, key: &[u8]) -> Option<fn()> {
        use hmac::Mac;
        // `verify_slice` compares in constant time: it must not tell how much of a forged MAC was
        // right.
        signed_fn_mac(key, self.offset).verify_slice(&self.mac).ok()?;
        // SAFETY: the MAC proves that `offset` was made by `sign` in a process holding `key`: a
        // process of this program's tree, which runs this same binary (children refuse to start
        // on another executable), from a `fn()` and the same anchor.
        Some(unsafe { function_at::<fn()>(signed_fn_anchor as fn() as usize, self.offset) })
    }
}
