//! The backends this build has: every one in load-probing order ([`backends`]) and the one
//! that trains a method ([`backend_for`]).

use crate::backend::TokenizerBackend;
use crate::char::CharBackend;
use crate::hf::HfBackend;
use crate::method::TokenizerMethod;

/// Every backend, in load-probing order (most specific first).
pub fn backends() -> [&'static dyn TokenizerBackend; 2] {
    [&CharBackend, &HfBackend]
}

/// The backend that trains `method`.
pub fn backend_for(method: TokenizerMethod) -> &'static dyn TokenizerBackend {
    match method {
        TokenizerMethod::Char => &CharBackend,
        _ => &HfBackend,
    }
}
