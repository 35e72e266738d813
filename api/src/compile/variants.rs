//! `spec.variants`: names, models, params, providers and prices.

use std::collections::BTreeSet;

use super::Errors;
use crate::config::{CompiledVariant, is_secret_key};
use crate::crd::Variant;

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

pub(super) fn check_variants(variants: &[Variant], errs: &mut Errors) -> Vec<CompiledVariant> {
    if variants.is_empty() {
        errs.push("spec.variants", "at least one variant is required");
    }
    let mut seen = BTreeSet::new();
    for (i, v) in variants.iter().enumerate() {
        let path = format!("spec.variants[{i}]");
        if !is_dns_label(&v.name) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "{:?} must be a lowercase DNS label (a-z, 0-9, '-', at most 63)",
                    v.name
                ),
            );
        } else if !seen.insert(v.name.as_str()) {
            errs.push(
                format!("{path}.name"),
                format!("duplicate name {:?}", v.name),
            );
        }
        if v.model.trim().is_empty() {
            errs.push(format!("{path}.model"), "must not be empty");
        }
        if let Some(params) = &v.params {
            match params.as_object() {
                None => errs.push(
                    format!("{path}.params"),
                    "must be an object (a JSON merge patch onto the request body)",
                ),
                Some(obj) => {
                    for reserved in ["model", "stream"] {
                        if obj.contains_key(reserved) {
                            errs.push(
                                format!("{path}.params.{reserved}"),
                                format!("may not be set by params ({reserved} is chosen by the variant and the client)"),
                            );
                        }
                    }
                    // Other stream options may be patched, but whether the
                    // usage chunk is asked for (and hidden) is the proxy's
                    // call, made from what the client sent.
                    match obj.get("stream_options") {
                        Some(options) if !options.is_object() => errs.push(
                            format!("{path}.params.stream_options"),
                            "must be an object (null would delete the client's stream options)",
                        ),
                        Some(options) if options.get("include_usage").is_some() => errs.push(
                            format!("{path}.params.stream_options.include_usage"),
                            "may not be set by params (the proxy asks for usage itself and hides it from clients that did not)",
                        ),
                        _ => {}
                    }
                }
            }
        }
        if let Some(provider) = &v.provider {
            if let Err(msg) = check_base_url(&provider.base_url) {
                errs.push(format!("{path}.provider.baseUrl"), msg);
            }
            if let Some(key) = &provider.credential_key
                && !is_secret_key(key)
            {
                errs.push(
                    format!("{path}.provider.credentialKey"),
                    format!("{key:?} is not a valid Secret key (letters, digits, '-', '.', '_')"),
                );
            }
        }
        if let Some(p) = &v.pricing {
            let prices = [
                ("inputPerMillion", Some(p.input_per_million)),
                ("outputPerMillion", Some(p.output_per_million)),
                ("cachedInputPerMillion", p.cached_input_per_million),
            ];
            for (field, price) in prices {
                if price.is_some_and(|x| !x.is_finite() || x < 0.0) {
                    errs.push(
                        format!("{path}.pricing.{field}"),
                        "must be a non-negative number",
                    );
                }
            }
        }
    }
    variants
        .iter()
        .map(|v| CompiledVariant {
            name: v.name.clone(),
            model: v.model.clone(),
            params: v.params.clone(),
            provider: v.provider.clone().map(|mut p| {
                p.base_url = p.base_url.trim_end_matches('/').to_string();
                p
            }),
            pricing: v.pricing.clone(),
        })
        .collect()
}

fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains(['?', '#', ' ']) || authority.contains('@') {
        return Err(format!(
            "{url:?} must be a plain base URL without credentials, query or fragment"
        ));
    }
    Ok(())
}
