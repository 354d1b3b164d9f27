//! Code addresses: naming a function so that another process running the same binary can call it,
//! and making values of zero-sized function types. Platform-neutral, but `unsafe`, so it lives here.

/// Makes a value of the zero-sized type `F` without having one.
///
/// Used for `fn` items and non-capturing closures, whose behaviour is entirely in their type.
pub(crate) fn conjure_zst<F: Copy>() -> F {
    conjure_zst_for::<F, AnyFunction>()
}

/// Why a function must be zero-sized, as the compile error for a closure that captures says it
/// (the check runs when the code is generated: `cargo build`, not `cargo check`).
pub(crate) trait ZstRule {
    /// The error's text: the rule and what to do instead.
    const MESSAGE: &'static str;
}

/// The rule of [`conjure_zst`].
struct AnyFunction;

impl ZstRule for AnyFunction {
    const MESSAGE: &'static str =
        "a function made from its type alone must be zero-sized: a fn item or a closure that captures nothing";
}

/// [`conjure_zst`], whose compile error for a type that is not zero-sized is `W`'s message.
pub(crate) fn conjure_zst_for<F: Copy, W: ZstRule>() -> F {
    const {
        if std::mem::size_of::<F>() != 0 {
            panic!("{}", W::MESSAGE)
        }
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

/// A typed function pointer `fn(Args) -> R`, with a second `fn() -> &'static str` (its name),
/// named so that another process of the same program can call them: their offsets from an
/// anchor, signed with the program's authkey (HMAC-SHA256) over the executable's identity and the
/// function type's `TypeId`. Resolving checks all three, so a handle made by another program, by
/// another executable (even one that shares the authkey), or for another function type is
/// refused instead of called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SignedFnPtr {
    call: i64,
    name: i64,
    /// The function type's name, for the error when it is not the one expected.
    signature: String,
    mac: [u8; 32],
}

fn signed_fn_ptr_anchor() {}

/// A function that returns a name (a [`SignedFnPtr`]'s second function).
pub(crate) type NameFn = fn() -> &'static str;

/// A resolved [`SignedFnPtr`]: the function and its name's function.
pub(crate) type Resolved<Args, R> = (fn(Args) -> R, NameFn);

/// The bytes a `TypeId` hashes to: the same in every process of one binary.
fn type_id_bytes<T: ?Sized + 'static>() -> Vec<u8> {
    struct Bytes(Vec<u8>);
    impl std::hash::Hasher for Bytes {
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn finish(&self) -> u64 {
            0
        }
    }
    let mut bytes = Bytes(Vec::new());
    std::hash::Hash::hash(&std::any::TypeId::of::<T>(), &mut bytes);
    bytes.0
}

#[allow(clippy::unreachable, reason = "HMAC takes keys of any length: new_from_slice cannot fail")]
fn signed_fn_ptr_mac(key: &[u8], exe: &[u8], type_id: &[u8], call: i64, name: i64) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"multiproc function\0");
    for part in [exe, type_id] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac.update(&call.to_le_bytes());
    mac.update(&name.to_le_bytes());
    mac
}

/// Why a [`SignedFnPtr`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It names a function of another type (this type's name).
    OtherType(String),
    /// Its signature is not this program's (another authkey or executable, or altered bytes).
    NotOurs,
}

impl SignedFnPtr {
    /// Names `call` and `name`, signed with `key` for the executable `exe`.
    pub(crate) fn sign<Args: 'static, R: 'static>(
        call: fn(Args) -> R,
        name: NameFn,
        key: &[u8],
        exe: &[u8],
    ) -> SignedFnPtr {
        use hmac::Mac;
        let anchor = signed_fn_ptr_anchor as fn() as usize;
        let call_offset = offset_between(anchor, call as usize);
        let name_offset = offset_between(anchor, name as usize);
        let type_id = type_id_bytes::<fn(Args) -> R>();
        let mac = signed_fn_ptr_mac(key, exe, &type_id, call_offset, name_offset).finalize().into_bytes().into();
        SignedFnPtr {
            call: call_offset,
            name: name_offset,
            signature: std::any::type_name::<fn(Args) -> R>().to_string(),
            mac,
        }
    }

    /// The function type's name this handle was made for.
    pub(crate) fn signature(&self) -> &str {
        &self.signature
    }

    /// The functions, if this is a `fn(Args) -> R` signed with `key` for the executable `exe`.
    pub(crate) fn resolve<Args: 'static, R: 'static>(
        &self,
        key: &[u8],
        exe: &[u8],
    ) -> Result<Resolved<Args, R>, Refused> {
        use hmac::Mac;
        if self.signature != std::any::type_name::<fn(Args) -> R>() {
            return Err(Refused::OtherType(self.signature.clone()));
        }
        let type_id = type_id_bytes::<fn(Args) -> R>();
        // Constant-time comparison: a forger learns nothing from how much of a MAC was right.
        signed_fn_ptr_mac(key, exe, &type_id, self.call, self.name)
            .verify_slice(&self.mac)
            .map_err(|_| Refused::NotOurs)?;
        let anchor = signed_fn_ptr_anchor as fn() as usize;
        // SAFETY: the MAC proves that `sign` made these offsets in a process holding `key`, running
        // the executable `exe` (this one: the caller passes this process's own identity), from
        // the same anchor, with a `fn(Args) -> R` of this very type (its `TypeId`, unique in a
        // binary, is signed) and a `fn() -> &'static str`.
        let call = unsafe { function_at::<fn(Args) -> R>(anchor, self.call) };
        // SAFETY: as above, for the name function.
        let name = unsafe { function_at::<NameFn>(anchor, self.name) };
        Ok((call, name))
    }
}
