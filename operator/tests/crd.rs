//! `crds/aifeatureflag.yaml`, and the chart's copy of it, must be exactly
//! what `crdgen` prints.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::path::Path;

#[test]
fn crd_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/aifeatureflag.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = aiflags_operator::crdgen::crd_yaml().expect("the CRD serializes");
    assert!(
        committed == generated,
        "crds/aifeatureflag.yaml is out of date with the AIFeatureFlag types; regenerate it:\n\
         \n    cargo run -p aiflags-operator -- crdgen > crds/aifeatureflag.yaml\n"
    );
}

#[test]
fn the_chart_ships_the_same_crd() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/aiflags/crds/aifeatureflag.yaml");
    let shipped = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = aiflags_operator::crdgen::crd_yaml().expect("the CRD serializes");
    assert!(
        shipped == generated,
        "charts/aiflags/crds/aifeatureflag.yaml is out of date; regenerate it:\n\
         \n    cargo run -p aiflags-operator -- crdgen > charts/aiflags/crds/aifeatureflag.yaml\n"
    );
}

#[test]
fn crdgen_prints_the_crd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aiflags-operator"))
        .arg("crdgen")
        .output()
        .expect("runs");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout,
        aiflags_operator::crdgen::crd_yaml().expect("serializes")
    );
    assert!(stdout.contains("name: aifeatureflags.aiflags.dev"));
}
