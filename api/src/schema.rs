//! Hand-written schema fragments where derived ones are not structural.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An arbitrary JSON object kept as-is by the apiserver (`params` merge patches).
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
