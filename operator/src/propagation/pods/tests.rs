use serde_json::json;

use super::*;

/// A running pod; `sidecar` is `"init"`, `"container"` or `""` (none).
pub(crate) fn pod(name: &str, sidecar: &str, env: Option<&str>) -> Pod {
    let proxy = json!({
        "name": SIDECAR_CONTAINER,
        "image": "aiflags:test",
        "env": env.map(|v| vec![json!({"name": "AIFLAGS_ADMIN_LISTEN", "value": v})]).unwrap_or_default(),
        "ports": [{"name": "admin", "containerPort": 15090}],
        "resources": {"limits": {"memory": "64Mi"}},
    });
    let app = json!({"name": "app", "image": "app:1", "env": [{"name": "SECRET", "value": "x"}]});
    let (init, containers) = match sidecar {
        "init" => (vec![proxy], vec![app]),
        "container" => (Vec::new(), vec![app, proxy]),
        _ => (Vec::new(), vec![app]),
    };
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "7",
            "labels": {"app": "summarizer"}, "annotations": {"big": "x".repeat(1000)},
            "managedFields": [{"manager": "kubelet"}],
        },
        "spec": {"initContainers": init, "containers": containers, "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "hostIP": "192.168.0.1"},
    }))
    .expect("a pod")
}

#[test]
fn the_sidecar_is_found_as_a_native_sidecar_or_a_container() {
    assert!(sidecar(&pod("a", "init", None)).is_some());
    assert!(sidecar(&pod("a", "container", None)).is_some());
    assert!(sidecar(&pod("a", "", None)).is_none());
    assert!(is_proxy(&pod("a", "init", None)));
    let mut leaving = pod("a", "init", None);
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    assert!(!is_proxy(&leaving));
}

#[test]
fn the_admin_port_comes_from_the_sidecars_setting() {
    let addr = |env| admin_addr(&pod("a", "init", env));
    assert_eq!(addr(None), Some("10.0.0.7:15090".parse().expect("addr")));
    assert_eq!(
        addr(Some("0.0.0.0:15191")),
        Some("10.0.0.7:15191".parse().expect("addr"))
    );
    assert_eq!(
        addr(Some("[::]:9000")),
        Some("10.0.0.7:9000".parse().expect("addr"))
    );
    // A setting the sidecar would refuse: no guess.
    assert_eq!(addr(Some("localhost:15090")), None);
    assert_eq!(addr(Some("15090")), None);

    let mut no_ip = pod("a", "init", None);
    no_ip.status = None;
    assert_eq!(admin_addr(&no_ip), None);
    let mut v6 = pod("a", "init", None);
    v6.status.get_or_insert_default().pod_ip = Some("fd00::7".into());
    assert_eq!(
        admin_addr(&v6),
        Some("[fd00::7]:15090".parse().expect("addr"))
    );
}

#[test]
fn a_stripped_pod_keeps_only_what_propagation_reads() {
    let stripped = strip(pod("a", "init", Some("0.0.0.0:15191")));
    let expected = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "a", "namespace": "shop", "uid": "uid-a", "resourceVersion": "7",
            "labels": {"app": "summarizer"},
        },
        "spec": {"containers": [{
            "name": SIDECAR_CONTAINER,
            "env": [{"name": "AIFLAGS_ADMIN_LISTEN", "value": "0.0.0.0:15191"}],
            "ports": [{"name": "admin", "containerPort": 15090}],
        }]},
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    });
    assert_eq!(serde_json::to_value(&stripped).expect("json"), expected);
    assert_eq!(
        admin_addr(&stripped),
        Some("10.0.0.7:15191".parse().expect("addr"))
    );
}

#[test]
fn only_pods_with_a_sidecar_enter_the_cache() {
    let kept = |event| keep_proxies(event).is_some();
    assert!(kept(Event::Apply(pod("a", "init", None))));
    assert!(kept(Event::InitApply(pod("a", "container", None))));
    assert!(!kept(Event::Apply(pod("a", "", None))));
    assert!(!kept(Event::InitApply(pod("a", "", None))));
    assert!(kept(Event::Delete(pod("a", "", None))));
    assert!(kept(Event::Init) && kept(Event::InitDone));
    let Some(Event::Apply(stripped)) = keep_proxies(Event::Apply(pod("a", "init", None))) else {
        panic!("kept as an apply");
    };
    assert!(stripped.metadata.annotations.is_none());
}
