//! Objects of user types (`#[managed]`), in the same table as the built-ins: their methods take
//! the pickled arguments as they came and give a pickled result.

use std::sync::Mutex;

use super::{Caller, Input, Outcome, Raise, Served, lock};
use crate::manager::registry::DynManaged;
use crate::pickle::PickleValue;

/// An object of a registered user type.
pub(crate) struct Custom {
    pub(crate) type_name: &'static str,
    pub(crate) methods: &'static [&'static str],
    pub(crate) object: Mutex<Box<dyn DynManaged>>,
}

impl Served for Custom {
    fn typeid(&self) -> &str {
        self.type_name
    }

    fn exposed(&self) -> &'static [&'static str] {
        self.methods
    }

    fn call(&self, method: &str, input: Input, _caller: &Caller<'_>) -> Result<Outcome, Raise> {
        let args = input.pickled(method)?;
        lock(&self.object).call_method(method, &args).map(Outcome::Pickled).map_err(Raise::Remote)
    }

    fn repr(&self) -> String {
        match self.value() {
            Ok(value) => format!("{}({value})", self.type_name),
            Err(_) => format!("<{} object>", self.type_name),
        }
    }

    fn value(&self) -> Result<PickleValue, Raise> {
        let bytes = lock(&self.object).state().map_err(Raise::Remote)?;
        crate::pickle::decode::decode(&bytes, crate::pickle::decode::Mode::Objects).map_err(Raise::Remote)
    }
}
