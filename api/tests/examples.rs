//! The shipped examples: the valid ones compile (and pass the CRD's CEL rules),
//! each invalid one fails with exactly the messages its `# expect:` lines name.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers may fail loudly

use std::fs;
use std::path::{Path, PathBuf};

use aiflags_api::{compile_manifests, parse_manifests};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("examples dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_examples_compile_and_pass_cel() {
    let files = yaml_files(&examples_dir());
    assert!(files.len() >= 3, "expected at least three examples");
    for file in files {
        let text = fs::read_to_string(&file).expect("read example");
        let (manifests, parse_errors) = parse_manifests(&file.display().to_string(), &text);
        assert_eq!(parse_errors, vec![], "{}", file.display());
        assert!(!manifests.is_empty(), "{} holds no flag", file.display());
        for m in &manifests {
            assert!(
                m.flag.validate_cel().is_ok(),
                "{}: {:?}",
                file.display(),
                m.flag.validate_cel()
            );
        }
        let (config, errors) = compile_manifests(&manifests, None);
        assert_eq!(errors, vec![], "{}", file.display());
        assert_eq!(config.flags.len(), manifests.len());
    }
}

#[test]
fn invalid_examples_fail_with_exactly_the_expected_messages() {
    let files = yaml_files(&examples_dir().join("invalid"));
    assert!(files.len() >= 5, "expected a folder of invalid examples");
    for file in files {
        let text = fs::read_to_string(&file).expect("read example");
        let mut expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let (manifests, parse_errors) = parse_manifests("f", &text);
        assert_eq!(parse_errors, vec![], "{}", file.display());
        let (config, errors) = compile_manifests(&manifests, None);
        let mut found: Vec<String> = errors
            .iter()
            .map(|e| {
                assert!(e.to_string().starts_with("f (document 1): "), "{e}");
                e.message.clone()
            })
            .collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected, "{}", file.display());
        assert!(config.flags.is_empty(), "an invalid flag never serves");
    }
}
