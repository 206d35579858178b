//! Records the git commit hookwire is built from as `HOOKWIRE_COMMIT` ("unknown" outside
//! a git checkout), so that two builds of one version can be told apart
//! (`hookwire --version`, `hookwire_node_info{commit}`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HOOKWIRE_COMMIT={commit}");
    // Built again when HEAD moves: a checkout (HEAD), or a commit on the branch (its ref,
    // or packed-refs once git packs it).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
