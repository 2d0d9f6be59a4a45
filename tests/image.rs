//! The image built here without Docker (scripts/image, what the test node runs) and the published
//! recipe (the Dockerfile's final stage) agree on what a cluster sees: user, entrypoint, port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::path::Path;
use std::process::Command;

use support::repo_root;

/// The final stage's instructions of the Dockerfile: (instruction, arguments).
fn dockerfile_final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM");
    lines[last_from..]
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(instruction, rest)| (instruction.to_string(), rest.trim().to_string()))
        .collect()
}

fn instruction<'a>(stage: &'a [(String, String)], name: &str) -> &'a str {
    stage
        .iter()
        .find(|(i, _)| i == name)
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("no {name} in the final stage"))
}

/// Unpacks an OCI archive into `dir` and returns its image config.
fn image_config(archive: &Path, dir: &Path) -> serde_json::Value {
    let status = Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir).status().expect("run tar");
    assert!(status.success(), "tar -xf {}", archive.display());
    let blob = |digest: &str| -> serde_json::Value {
        let path = dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().expect("a manifest"));
    blob(manifest["config"]["digest"].as_str().expect("a config"))
}

/// `make image`'s archive unpacked into a directory of its own, and its image config.
fn unpacked_image() -> (tempfile::TempDir, serde_json::Value) {
    let archive = repo_root().join("target/image/consent-token-operator.tar");
    assert!(archive.exists(), "{} is missing: `make image` builds it", archive.display());
    let dir = tempfile::tempdir().unwrap();
    let config = image_config(&archive, dir.path());
    (dir, config)
}

#[test]
fn the_image_built_without_docker_has_the_dockerfiles_user_entrypoint_and_port() {
    let (_dir, config) = unpacked_image();
    let stage = dockerfile_final_stage();

    assert_eq!(config["config"]["User"], instruction(&stage, "USER"));
    let entrypoint: Vec<String> =
        serde_json::from_str(instruction(&stage, "ENTRYPOINT")).expect("exec-form ENTRYPOINT");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(entrypoint));
    let port = instruction(&stage, "EXPOSE");
    let exposed: Vec<&String> = config["config"]["ExposedPorts"].as_object().expect("exposed ports").keys().collect();
    assert_eq!(exposed, [&format!("{port}/tcp")]);
    // The file the Dockerfile copies is where the entrypoint says, and the image runs it as the
    // non-root user of distroless/static.
    let copy = instruction(&stage, "COPY");
    assert!(copy.ends_with(&format!(" {}", entrypoint[0])), "COPY puts the binary at the entrypoint: {copy}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
}

/// The image holds the entrypoint as a static executable and the passwd entry of its user.
#[test]
fn the_images_layers_hold_a_static_entrypoint_and_its_user() {
    let (dir, config) = unpacked_image();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let layers = config["rootfs"]["diff_ids"].as_array().expect("layers").len();
    // Layers are gzipped tarballs named by their compressed digest; the other blobs (JSON) are
    // not tarballs and unpack nothing.
    let mut unpacked = 0;
    for blob in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap().flatten() {
        let output = Command::new("tar").arg("-xzf").arg(blob.path()).arg("-C").arg(&rootfs).output().unwrap();
        unpacked += usize::from(output.status.success());
    }
    assert_eq!(unpacked, layers, "every layer is a whole tar stream");
    let binary = rootfs.join("usr/local/bin/consent-token-operator");
    let elf = std::fs::read(&binary).expect("the binary is in the image");
    assert_eq!(&elf[..4], b"\x7fELF");
    let ldd = Command::new("ldd").arg(&binary).output().expect("run ldd");
    assert!(!ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("statically linked"), "static");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "{passwd}");
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("nonroot:x:65532:")), "{group}");
    assert!(rootfs.join("tmp").is_dir(), "a /tmp, as distroless/static has");
}

/// Each platform's image config of an OCI layout whose index.json names one image index (the
/// release's, `scripts/image index`): (platform, config).
fn index_configs(layout: &Path) -> Vec<(String, serde_json::Value)> {
    let blob = |digest: &str| -> serde_json::Value {
        let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let top: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let index = blob(top["manifests"][0]["digest"].as_str().expect("an index"));
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let platform = format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            );
            let manifest = blob(m["digest"].as_str().unwrap());
            (platform, blob(manifest["config"]["digest"].as_str().unwrap()))
        })
        .collect()
}

/// The release's index (`make release-build`, which `make test` runs for linux/amd64 and
/// linux/arm64): each platform's image has the user, entrypoint and port of `make image`'s, for
/// its architecture, and the arm64 binary runs (under Debian's qemu-aarch64-static here).
#[test]
fn every_platform_of_the_release_index_has_the_images_user_entrypoint_and_port() {
    let layout = repo_root().join("target/release-test/image");
    assert!(layout.exists(), "{} is missing: `make test` builds it (make release-build)", layout.display());
    let (_dir, reference) = unpacked_image();
    let configs = index_configs(&layout);
    let platforms: Vec<&str> = configs.iter().map(|(platform, _)| platform.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "an image per platform");
    let arm64 = repo_root().join("target/static/aarch64-unknown-linux-gnu/debug/consent-token-operator");
    let elf = std::fs::read(&arm64).unwrap();
    assert_eq!(u16::from_le_bytes([elf[18], elf[19]]), 0xb7, "an aarch64 ELF binary");
    let said = Command::new("qemu-aarch64-static").arg(&arm64).arg("--version").output().unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    assert_eq!(
        said.trim(),
        format!("consent-token-operator {}", env!("CARGO_PKG_VERSION")),
        "under qemu-aarch64-static"
    );
    for (platform, config) in configs {
        assert_eq!(config["config"], reference["config"], "{platform}: user, entrypoint, ports as make image's");
        assert_eq!(
            format!("{}/{}", config["os"].as_str().unwrap(), config["architecture"].as_str().unwrap()),
            platform
        );
    }
}

/// Same binaries, same digest: the index built twice from one binary is byte for byte the same
/// (file times and the creation time are SOURCE_DATE_EPOCH; no clock in the history).
#[test]
fn the_image_index_is_the_same_for_the_same_binaries() {
    let binary = repo_root().join("target/static/x86_64-unknown-linux-gnu/debug/consent-token-operator");
    assert!(binary.exists(), "{} is missing: `make image` builds it", binary.display());
    let dir = tempfile::tempdir().unwrap();
    let digests: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| {
            let output = Command::new(repo_root().join("scripts/image"))
                .arg("index")
                .arg(dir.path().join(name))
                .arg("0.0.0")
                .arg(format!("amd64={}", binary.display()))
                .output()
                .unwrap();
            assert!(output.status.success(), "scripts/image index: {}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(output.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert!(digests[0].starts_with("sha256:"), "{digests:?}");
    assert_eq!(digests[0], digests[1], "two builds of the index from one binary");
}
