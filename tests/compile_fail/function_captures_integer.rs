// mode: build
// expect: a Function must be a fn item or a closure that captures nothing
// expect: pass them as arguments
use multiproc::Function;

fn main() {
    let k = 7u64;
    let f = Function::new(move |x: u64| x * k);
    println!("{}", f.call((6,)));
}
