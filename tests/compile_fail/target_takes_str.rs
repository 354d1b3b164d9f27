// mode: check
// expect: ArgumentMustBeOwned_UseStringNotStr
// reject: implementation of `Deserialize` is not general enough
use multiproc::Process;

fn greet(name: &str) {
    println!("hello, {name}");
}

fn main() -> multiproc::Result<()> {
    let mut p = Process::new(greet, ("world",));
    p.start()?;
    p.join()?;
    Ok(())
}
