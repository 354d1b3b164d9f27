//! Manager: d[1] = '1', d['2'] = 2, d[0.25] = None, l.reverse().
//!
//! Ported from Python:
//!
//! - `d[1] = '1'`, `d['2'] = 2`, `d[0.25] = None`, `l.reverse()`. Mixed key and value types through
//!   `manager::Value`.
//!
//! Run it with `cargo run --example manager_mixed`; the `tour` example runs it too.

use multiproc::manager::{DictProxy, ListProxy, Value};
use multiproc::{Manager, Process};

fn mixed(d: DictProxy<Value, Value>, l: ListProxy<i64>) -> multiproc::Result<()> {
    d.insert(&1.into(), &"1".into())?;
    d.insert(&"2".into(), &2.into())?;
    d.insert(&0.25.into(), &Value::None)?;
    l.reverse()
}

/// Keys and values of mixed types (`d[1] = '1'; d['2'] = 2; d[0.25] = None`) and
/// `l.reverse()` in a child.
pub fn mixed_dict_and_list() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let d = manager.dict::<Value, Value>()?;
    let l = manager.list(&(0..10).collect::<Vec<i64>>())?;
    let mut p = Process::new(mixed, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    println!("  {}", Value::Dict(d.items()?));
    println!("  {:?}", l.to_vec()?);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    mixed_dict_and_list()
}
