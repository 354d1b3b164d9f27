//! Manager: a worker fills a dict and a list.
//!
//! Ported from Python:
//!
//! - A worker fills `manager.dict()` and `manager.list()`. Python 2's `xrange` is a range; the dict
//!   prints in insertion order.
//!
//! Run it with `cargo run --example manager_dict_list`; the `tour` example runs it too.

use multiproc::manager::{DictProxy, ListProxy};
use multiproc::{Manager, Process};

fn fill(d: DictProxy<String, String>, l: ListProxy<i64>) -> multiproc::Result<()> {
    l.extend(&[11, 12, 13, 14, 15])?;
    for i in 1..6 {
        d.insert(&format!("key{i}"), &format!("val{i}"))?;
    }
    Ok(())
}

/// A worker process fills a manager's dict and list; the parent prints them.
pub fn worker_fills_dict_and_list() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let d = manager.dict::<String, String>()?;
    let l = manager.list::<i64>(&[])?;
    let mut p = Process::new(fill, (d.clone(), l.clone()));
    p.start()?;
    p.join()?;
    let shown: Vec<String> = d.items()?.iter().map(|(k, v)| format!("'{k}': '{v}'")).collect();
    println!("  {{{}}}", shown.join(", "));
    println!("  {:?}", l.to_vec()?);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    worker_fills_dict_and_list()
}
