use super::*;

fn flag(name: &str, model: &str) -> String {
    format!(
        "apiVersion: aiflags.dev/v1alpha1\nkind: AIFeatureFlag\nmetadata: {{name: {name}}}\nspec:\n  defaultVariant: a\n  variants: [{{name: a, model: {model}}}]\n"
    )
}

fn models(config: &SidecarConfig) -> Vec<(String, String)> {
    config
        .flags
        .iter()
        .map(|f| (f.key.clone(), f.variants[0].model.clone()))
        .collect()
}

fn file(text: &str) -> Vec<(PathBuf, Vec<u8>)> {
    vec![(PathBuf::from("flags.yaml"), text.as_bytes().to_vec())]
}

#[test]
fn a_syntax_error_keeps_every_flag_of_its_file() {
    let mut local = LocalFlags::default();
    let good = format!("{}---\n{}", flag("one", "m1"), flag("two", "m2"));
    assert_eq!(models(&local.compile(&file(&good))).len(), 2);
    // An edit that breaks the YAML of the first document: nothing is lost,
    // and the second document's edit still applies.
    let broken = format!(
        "{}  oops: [\n---\n{}",
        flag("one", "m1-new"),
        flag("two", "m2-new")
    );
    assert_eq!(
        models(&local.compile(&file(&broken))),
        [("one".into(), "m1".into()), ("two".into(), "m2-new".into())]
    );
    // Fixed: the new version of the first flag serves.
    let fixed = format!("{}---\n{}", flag("one", "m1-new"), flag("two", "m2-new"));
    assert_eq!(
        models(&local.compile(&file(&fixed))),
        [
            ("one".into(), "m1-new".into()),
            ("two".into(), "m2-new".into())
        ]
    );
}

#[test]
fn a_schema_error_keeps_that_flags_last_version() {
    let mut local = LocalFlags::default();
    local.compile(&file(&format!(
        "{}---\n{}",
        flag("one", "m1"),
        flag("two", "m2")
    )));
    let bad = flag("one", "m1").replace("defaultVariant: a", "defaultVariant: [a]");
    let config = local.compile(&file(&format!("{bad}---\n{}", flag("two", "m2-new"))));
    assert_eq!(
        models(&config),
        [("one".into(), "m1".into()), ("two".into(), "m2-new".into())]
    );
}

#[test]
fn a_compile_error_keeps_that_flags_last_version() {
    let mut local = LocalFlags::default();
    local.compile(&file(&flag("one", "m1")));
    let invalid = flag("one", "m2").replace("defaultVariant: a", "defaultVariant: missing");
    assert_eq!(
        models(&local.compile(&file(&invalid))),
        [("one".into(), "m1".into())]
    );
}

#[test]
fn a_flag_removed_on_purpose_is_gone() {
    let mut local = LocalFlags::default();
    local.compile(&file(&format!(
        "{}---\n{}",
        flag("one", "m1"),
        flag("two", "m2")
    )));
    assert_eq!(
        models(&local.compile(&file(&flag("two", "m2")))),
        [("two".into(), "m2".into())]
    );
    assert!(
        local.compile(&[]).flags.is_empty(),
        "the file itself was removed"
    );
}

#[test]
fn a_flag_moved_out_of_a_broken_file_serves_once_in_its_new_version() {
    let mut local = LocalFlags::default();
    let a = PathBuf::from("a.yaml");
    let b = PathBuf::from("b.yaml");
    let first = vec![
        (a.clone(), flag("one", "m1").into_bytes()),
        (b.clone(), flag("two", "m2").into_bytes()),
    ];
    assert_eq!(models(&local.compile(&first)).len(), 2);
    // a.yaml breaks while "one" moves to b.yaml with a new model: the moved
    // version wins over the carried one, and nothing is served twice.
    let moved = vec![
        (a.clone(), b"spec: [".to_vec()),
        (
            b.clone(),
            format!("{}---\n{}", flag("one", "m1-new"), flag("two", "m2")).into_bytes(),
        ),
    ];
    assert_eq!(
        models(&local.compile(&moved)),
        [("one".into(), "m1-new".into()), ("two".into(), "m2".into())]
    );
}
