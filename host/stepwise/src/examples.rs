//! Building the workspace's example handlers with plain cargo, for `stepwise demo` and
//! `stepwise bench` run from a checkout.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The workspace this binary was built from.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("host/stepwise sits in the workspace")
        .to_path_buf()
}

/// Builds the example crate `package` (e.g. `example-payments`) for wasm32-wasip2 in release
/// mode, into `target/guests` (shared with the tests' guest builds), and returns the component.
pub fn build(package: &str) -> Result<PathBuf> {
    let ws = workspace();
    let target = ws.join("target").join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tracing::info!("building {package} for wasm32-wasip2");
    let status = std::process::Command::new(cargo)
        .current_dir(&ws)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .with_context(|| format!("cannot run cargo to build {package}"))?;
    if !status.success() {
        bail!(
            "building {package} failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`)"
        );
    }
    Ok(target
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_"))))
}
