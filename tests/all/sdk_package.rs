//! The SDK as published: `cargo package` makes crates of `stepwise-sdk`, its macros and the
//! naming rules (the WIT files inside), and a handler crate outside this workspace, which
//! depends on those packaged crates only, builds for `wasm32-wasip2`, deploys and runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use stepwise::RunStatus;

use crate::util::*;

const PACKAGES: [&str; 3] = ["stepwise-names", "stepwise-sdk-macros", "stepwise-sdk"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A cargo command with none of the outer build's settings.
fn cargo(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const HANDLER: &str = r#"
use serde::{Deserialize, Serialize};
use stepwise_sdk::prelude::*;

#[derive(Deserialize)]
struct Order {
    items: u32,
}

#[derive(Serialize)]
struct Packed {
    boxes: u32,
}

/// Packs an order, one step per box computation.
#[job(max_attempts = 3)]
fn pack(ctx: &mut Ctx, order: Order) -> Result<Packed, JobError> {
    let boxes = ctx.step("count-boxes", || Ok(order.items.div_ceil(4)))?;
    Ok(Packed { boxes })
}

export_jobs!(pack);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_outside_the_workspace_builds_against_the_packaged_sdk() {
    let work = tempfile::tempdir().unwrap();
    let root = workspace();

    let mut package = cargo(&root);
    package
        .args(["package", "--allow-dirty", "--no-verify", "--target-dir"])
        .arg(work.path().join("package-target"));
    for p in PACKAGES {
        package.args(["-p", p]);
    }
    run(package, "cargo package");

    // Unpack each crate as a registry would hand it out.
    let crates = work.path().join("crates");
    std::fs::create_dir_all(&crates).unwrap();
    for p in PACKAGES {
        let file = work
            .path()
            .join("package-target/package")
            .join(format!("{p}-0.1.0.crate"));
        let mut untar = Command::new("tar");
        untar.arg("xzf").arg(&file).arg("-C").arg(&crates);
        run(untar, "unpack the crate");
    }
    assert!(
        crates.join("stepwise-sdk-0.1.0/wit/stepwise.wit").is_file(),
        "the SDK's crate carries the WIT package"
    );

    // A handler crate of its own workspace, depending on the SDK by version; the patch
    // stands in for crates.io with the packaged crates.
    let handler = work.path().join("outside-handler");
    std::fs::create_dir_all(handler.join("src")).unwrap();
    let patch = |p: &str| format!("{p} = {{ path = {:?} }}", crates.join(format!("{p}-0.1.0")));
    std::fs::write(
        handler.join("Cargo.toml"),
        format!(
            "[package]\nname = \"outside-handler\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nstepwise-sdk = \"0.1.0\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
             [patch.crates-io]\n{}\n{}\n{}\n\n[workspace]\n",
            patch("stepwise-sdk"),
            patch("stepwise-sdk-macros"),
            patch("stepwise-names"),
        ),
    )
    .unwrap();
    std::fs::write(handler.join("src/lib.rs"), HANDLER).unwrap();
    // The workspace's lock pins the same dependency versions the guests use, offline.
    std::fs::copy(root.join("Cargo.lock"), handler.join("Cargo.lock")).unwrap();
    let target = root.join("target/guests");
    let mut build = cargo(&handler);
    build
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target);
    run(build, "cargo build of the outside handler");
    let component = target.join("wasm32-wasip2/release/outside_handler.wasm");

    let h = harness().await;
    let view = h
        .run(
            component.to_str().unwrap(),
            "pack",
            json!({"items": 9}),
            stepwise::PolicyOverrides::default(),
        )
        .await;
    assert_eq!(view.run.status, RunStatus::Completed, "{view:?}");
    assert_eq!(view.run.output, Some(json!({"boxes": 3})));
}
