//! Records the git commit the binary was built from (for `kairos bench` results).

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KAIROS_COMMIT={commit}");
    // Rebuild when HEAD moves; only watch files that exist (a missing one reruns every time).
    for f in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
