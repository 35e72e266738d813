//! `spec.podSelector`: a Kubernetes label selector reduced to what a sidecar evaluates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::Errors;
use crate::config::{Selector, SelectorOperator, SelectorRequirement};

pub(super) fn compile_selector(s: &LabelSelector, errs: &mut Errors) -> Selector {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let path = format!("spec.podSelector.matchExpressions[{i}]");
        let values = e.values.clone().unwrap_or_default();
        let operator = match e.operator.as_str() {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            other => {
                errs.push(
                    format!("{path}.operator"),
                    format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"),
                );
                continue;
            }
        };
        let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == values.is_empty() {
            let msg = if needs_values {
                "must be non-empty for In and NotIn"
            } else {
                "must be empty for Exists and DoesNotExist"
            };
            errs.push(format!("{path}.values"), msg);
        }
        out.match_expressions.push(SelectorRequirement {
            key: e.key.clone(),
            operator,
            values,
        });
    }
    out
}
