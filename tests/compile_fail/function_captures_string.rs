// mode: check
// expect: cannot become a `Function
// expect: pass that data as an argument
// reject: String: Copy
use multiproc::Function;

fn main() {
    let greeting = String::from("hello");
    let f = Function::new(move |name: String| format!("{greeting}, {name}"));
    println!("{}", f.call(("world".to_string(),)));
}
