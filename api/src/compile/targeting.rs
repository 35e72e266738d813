//! `spec.targeting`: rules evaluated before the split.

use super::{Errors, unknown_variant};
use crate::config::{CompiledTargeting, StickySource, http_token};
use crate::crd::TargetingRule;

pub(super) fn compile_targeting(
    rules: &[TargetingRule],
    names: &[&str],
    errs: &mut Errors,
) -> Vec<CompiledTargeting> {
    let mut targeting = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.targeting[{i}]");
        if !names.contains(&rule.variant.as_str()) {
            errs.push(
                format!("{path}.variant"),
                unknown_variant(&rule.variant, names),
            );
        }
        if rule.when.header.is_empty() && rule.when.body.is_empty() {
            errs.push(
                format!("{path}.when"),
                "must name at least one header or body field",
            );
        }
        for name in rule.when.header.keys() {
            if name.is_empty() || !http_token(name) {
                errs.push(
                    format!("{path}.when.header"),
                    format!("{name:?} is not a valid header name"),
                );
            }
        }
        for field in rule.when.body.keys() {
            if StickySource::parse(&format!("body:{field}")).is_none() {
                errs.push(
                    format!("{path}.when.body"),
                    format!("{field:?} is not a field path such as user or metadata.tier"),
                );
            }
        }
        targeting.push(CompiledTargeting {
            headers: rule
                .when
                .header
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: rule.when.body.clone(),
            variant: rule.variant.clone(),
        });
    }

    targeting
}
