use multiproc::{Process, StartMethod};

fn hello(n: u32, s: String) {
    println!(
        "child {n} {s} pid={} name={} parent={:?}",
        std::process::id(),
        multiproc::current_process().name(),
        multiproc::parent_process().map(|p| p.pid())
    );
}
fn boom() {
    panic!("boom")
}
fn code() -> i32 {
    7
}

fn main() -> multiproc::Result<()> {
    for m in [StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork] {
        let t = std::time::Instant::now();
        let mut p = Process::new(hello, (1, "x".to_string())).with_start_method(m);
        p.start()?;
        println!("{m}: join -> {} in {:?}", p.join()?, t.elapsed());
        let mut p = Process::new(boom, ()).with_start_method(m);
        p.start()?;
        println!("{m}: boom -> {}", p.join()?);
        let mut p = Process::new(code, ()).with_start_method(m);
        p.start()?;
        println!("{m}: code -> {} {p}", p.join()?);
    }
    let v = 5;
    let mut p = Process::fork(move || println!("captured {v}"));
    p.start()?;
    println!("fork closure -> {}", p.join()?);
    Ok(())
}
