//! Manual control by annotation: `aiflags.dev/promote`, `abort`, `pause`
//! and `resume` (any value). The operator acts on them and removes them.
//! Pure, but for the patch that removes them.
//!
//! When several are present at once the safest wins: abort, then pause,
//! then resume, then promote; all are removed together.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Command;

pub const PROMOTE: &str = "aiflags.dev/promote";
pub const ABORT: &str = "aiflags.dev/abort";
pub const PAUSE: &str = "aiflags.dev/pause";
pub const RESUME: &str = "aiflags.dev/resume";

/// Every command annotation, safest first.
pub const ANNOTATIONS: [(&str, Command); 4] = [
    (ABORT, Command::Abort),
    (PAUSE, Command::Pause),
    (RESUME, Command::Resume),
    (PROMOTE, Command::Promote),
];

/// The annotation that gives `command`.
pub fn annotation(command: Command) -> &'static str {
    match command {
        Command::Promote => PROMOTE,
        Command::Abort => ABORT,
        Command::Pause => PAUSE,
        Command::Resume => RESUME,
    }
}

/// What the annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    /// The command to act on.
    pub command: Option<Command>,
    /// Every command annotation present, to remove once acted on.
    pub present: Vec<&'static str>,
}

pub fn requested(annotations: Option<&BTreeMap<String, String>>) -> Requested {
    let Some(annotations) = annotations else {
        return Requested::default();
    };
    let present: Vec<(&'static str, Command)> = ANNOTATIONS
        .into_iter()
        .filter(|(key, _)| annotations.contains_key(*key))
        .collect();
    Requested {
        command: present.first().map(|(_, c)| *c),
        present: present.into_iter().map(|(key, _)| key).collect(),
    }
}

/// The merge patch that removes `keys`.
pub fn removal(keys: &[&str]) -> Value {
    let annotations: Map<String, Value> = keys
        .iter()
        .map(|key| (key.to_string(), Value::Null))
        .collect();
    json!({"metadata": {"annotations": annotations}})
}

/// The merge patch that gives `command` (what the CLI sends).
pub fn request_patch(command: Command, value: &str) -> Value {
    json!({"metadata": {"annotations": {annotation(command): value}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| (k.to_string(), "true".to_string()))
            .chain([("unrelated".to_string(), "x".to_string())])
            .collect()
    }

    #[test]
    fn the_safest_command_wins_and_all_are_removed() {
        let found = requested(Some(&annotated(&[PROMOTE, ABORT, RESUME])));
        assert_eq!(found.command, Some(Command::Abort));
        assert_eq!(found.present, [ABORT, RESUME, PROMOTE]);
        assert_eq!(
            removal(&found.present),
            json!({"metadata": {"annotations": {
                "aiflags.dev/abort": null, "aiflags.dev/resume": null, "aiflags.dev/promote": null,
            }}})
        );
        assert_eq!(
            requested(Some(&annotated(&[PAUSE, RESUME]))).command,
            Some(Command::Pause)
        );
    }

    #[test]
    fn no_command_annotations_ask_for_nothing() {
        assert_eq!(requested(None), Requested::default());
        assert_eq!(requested(Some(&annotated(&[]))), Requested::default());
    }

    #[test]
    fn each_command_round_trips_through_its_annotation() {
        for (key, command) in ANNOTATIONS {
            assert_eq!(annotation(command), key);
            let patch = request_patch(command, "2025-06-01T12:00:00Z");
            let annotations: BTreeMap<String, String> =
                serde_json::from_value(patch["metadata"]["annotations"].clone()).expect("a map");
            assert_eq!(requested(Some(&annotations)).command, Some(command));
        }
    }
}
