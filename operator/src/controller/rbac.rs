//! The namespaced Role and RoleBinding that let a namespace's pods (their
//! sidecars) read that namespace's `aiflags-config`, and nothing else: the
//! objects (pure), and the two calls that apply and delete them.
//!
//! Lifetime: they exist while the namespace has flags. Every flag's
//! reconcile applies them (at most once per namespace per resync period),
//! and the finalizer of the namespace's last flag deletes them. Owner
//! references would not do: owned by one flag they would vanish with it
//! while other flags remain, and owned by every flag they would carry one
//! reference per flag (thousands, rewritten on every create and delete).
//! Deleting a namespace deletes them with it.

use std::collections::BTreeMap;

use aiflags_api::CONFIG_MAP_NAME;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::config_map::{MANAGED_BY, MANAGER};

/// Name of both the Role and the RoleBinding.
pub const READER: &str = "aiflags-config-reader";

fn metadata(namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(READER.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.to_string(),
            MANAGER.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// get, list and watch of the one ConfigMap. RBAC authorizes a list or
/// watch by `resourceNames` only when the request selects that name
/// (`fieldSelector=metadata.name=aiflags-config`), which the sidecar's
/// watch does.
pub fn desired_role(namespace: &str) -> Role {
    Role {
        metadata: metadata(namespace),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_string()]),
            resource_names: Some(vec![CONFIG_MAP_NAME.to_string()]),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            non_resource_urls: None,
        }]),
    }
}

/// Binds [`desired_role`] to every service account of the namespace: the
/// sidecar runs as whatever account its pod does.
pub fn desired_role_binding(namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: metadata(namespace),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: READER.to_string(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Group".to_string(),
            name: format!("system:serviceaccounts:{namespace}"),
            namespace: None,
        }]),
    }
}

/// Server-side applies the Role, then the RoleBinding.
pub async fn apply_reader(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let params = PatchParams::apply(MANAGER).force();
    Api::<Role>::namespaced(client.clone(), namespace)
        .patch(READER, &params, &Patch::Apply(&desired_role(namespace)))
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch(
            READER,
            &params,
            &Patch::Apply(&desired_role_binding(namespace)),
        )
        .await?;
    Ok(())
}

/// Deletes the RoleBinding, then the Role; either already gone is fine.
pub async fn delete_reader(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let params = DeleteParams::default();
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace);
    gone_is_fine(bindings.delete(READER, &params).await.map(drop))?;
    let roles = Api::<Role>::namespaced(client.clone(), namespace);
    gone_is_fine(roles.delete(READER, &params).await.map(drop))
}

fn gone_is_fine(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_role_reads_only_the_config_map() {
        let role = serde_json::to_value(desired_role("shop")).expect("serializable");
        assert_eq!(
            role,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {
                    "name": "aiflags-config-reader", "namespace": "shop",
                    "labels": {"app.kubernetes.io/managed-by": "aiflags-operator"},
                },
                "rules": [{
                    "apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["aiflags-config"], "verbs": ["get", "list", "watch"],
                }],
            })
        );
    }

    #[test]
    fn the_binding_names_the_namespaces_service_accounts() {
        let binding = serde_json::to_value(desired_role_binding("shop")).expect("serializable");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aiflags-config-reader"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts:shop"}])
        );
    }
}
