//! Compile errors that teach (issue 15.6): cargo runs on the small programs in
//! `tests/compile_fail/`, each a mistake a newcomer makes (a closure that captures, an argument
//! that borrows, a result type the crate does not know), and each must fail with a message that
//! names the rule and the fix, and without the unhelpful one it used to give.
//!
//! Each file says how it is compiled and what its errors must (not) say, in its first lines:
//! `// mode: check` (fails at `cargo check`), `// mode: build` (fails only when built: a closure
//! capturing plain data such as an integer is `Copy + Send + Sync + 'static` like a `fn` item, so
//! no trait can tell them apart and only the size check of the entry, which runs when the code is
//! generated, sees the capture), `// mode: check-pass` (the fixes compile); `// expect: TEXT`
//! and `// reject: TEXT`.
//!
//! It runs cargo twice over this crate (a check, and a debug build for the `build` cases), about a
//! minute on a quiet machine, so it is ignored by a plain `cargo test`; `.ci/run` runs it:
//! `cargo test --release --test compile_fail -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One program and what compiling it must give.
struct Case {
    name: String,
    mode: String,
    expect: Vec<String>,
    reject: Vec<String>,
}

fn read_cases(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/compile_fail")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("case");
            let directive = |key: &str| -> Vec<String> {
                text.lines().filter_map(|line| line.strip_prefix(key)).map(|v| v.trim().to_string()).collect()
            };
            let mode = directive("// mode:").pop().unwrap_or_else(|| panic!("{}: no `// mode:` line", path.display()));
            let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
            Case { name, mode, expect: directive("// expect:"), reject: directive("// reject:") }
        })
        .collect()
}

/// A crate with one binary per case, depending on this crate, in the test's scratch directory.
fn scratch_crate(root: &Path, cases: &[Case]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-fail");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut manifest = format!(
        "[package]\nname = \"multiproc-compile-fail\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nmultiproc = {{ path = {root:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         [workspace]\n"
    );
    for case in cases {
        let path = root.join("tests/compile_fail").join(format!("{}.rs", case.name));
        manifest.push_str(&format!("\n[[bin]]\nname = {:?}\npath = {:?}\n", case.name, path));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("manifest");
    // The workspace's lock file: the same dependency versions, and no network needed.
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    dir
}

/// Runs `cargo <action> --bin <case>` in the scratch crate: success, and what it printed.
fn cargo(dir: &Path, action: &str, case: &str) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([action, "--offline", "--quiet", "--bin", case])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
#[ignore = "runs cargo on small programs (about a minute); .ci/run runs it with --ignored"]
fn compile_errors_teach() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = read_cases(&root.join("tests/compile_fail"));
    assert!(cases.len() >= 8, "the cases are missing");
    let dir = scratch_crate(root, &cases);
    let mut failures = Vec::new();
    for case in &cases {
        let (action, must_pass) = match case.mode.as_str() {
            "check" => ("check", false),
            "build" => ("build", false),
            "check-pass" => ("check", true),
            other => panic!("{}: unknown mode {other}", case.name),
        };
        let (passed, text) = cargo(&dir, action, &case.name);
        let mut wrong = Vec::new();
        if passed != must_pass {
            wrong.push(format!("`cargo {action}` {}", if passed { "succeeded" } else { "failed" }));
        }
        wrong.extend(case.expect.iter().filter(|e| !text.contains(e.as_str())).map(|e| format!("no {e:?}")));
        wrong.extend(case.reject.iter().filter(|r| text.contains(r.as_str())).map(|r| format!("has {r:?}")));
        if !wrong.is_empty() {
            failures.push(format!("== {} ({}): {}\n{text}", case.name, case.mode, wrong.join(", ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
