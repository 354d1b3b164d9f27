// mode: check
// expect: ArgumentMustBeOwned_UseStringNotStr
// reject: implementation of `Deserialize` is not general enough
use multiproc::pool::Pool;

fn shout(text: &str) -> String {
    text.to_uppercase()
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let loud = pool.map(shout, vec!["a", "b"])?;
    println!("{loud:?}");
    Ok(())
}
