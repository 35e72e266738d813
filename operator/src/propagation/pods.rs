//! Which pods carry a sidecar, where its admin endpoint listens, and the
//! little of each pod the operator keeps. Pure.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;

/// Name of the injected sidecar container (a native sidecar, or a regular
/// container on clusters without them).
pub use crate::webhook::inject::CONTAINER_NAME as SIDECAR_CONTAINER;
use crate::webhook::inject::{PROXY_LABEL, PROXY_LABEL_VALUE};

/// The label selector of the pods the webhook injected: the pod watch asks
/// the API server for those only.
pub fn injected_selector() -> String {
    format!("{PROXY_LABEL}={PROXY_LABEL_VALUE}")
}
/// The sidecar's admin port when its settings do not say otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 15090;
/// The setting that names the admin listener, `host:port`.
const ADMIN_LISTEN_ENV: &str = "AIFLAGS_ADMIN_LISTEN";

/// The sidecar container of `pod`, if it was injected.
pub fn sidecar(pod: &Pod) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == SIDECAR_CONTAINER)
}

/// Whether the pod counts as a proxy: injected, and not on its way out.
/// (The watch asks only for running pods.)
pub fn is_proxy(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && sidecar(pod).is_some()
}

/// The port of the sidecar's admin listener: from its `AIFLAGS_ADMIN_LISTEN`
/// setting, else the default. A value the sidecar itself would refuse gives
/// `None`.
pub fn admin_port(sidecar: &Container) -> Option<u16> {
    let setting = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == ADMIN_LISTEN_ENV);
    match setting.and_then(|e| e.value.as_deref()) {
        None => Some(DEFAULT_ADMIN_PORT),
        Some(listen) => listen.parse::<SocketAddr>().ok().map(|a| a.port()),
    }
}

/// Where to reach the pod's sidecar admin endpoint, once the pod has an IP.
pub fn admin_addr(pod: &Pod) -> Option<SocketAddr> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = admin_port(sidecar(pod)?)?;
    Some(SocketAddr::new(ip, port))
}

pub fn labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// The pod reduced to what propagation reads: identity, labels, the
/// sidecar's name, settings and ports, and the pod IP. Keeps the cache of
/// every running injected pod of the cluster small.
pub fn strip(pod: Pod) -> Pod {
    let Pod {
        metadata,
        spec,
        status,
    } = pod;
    let sidecar = spec.as_ref().and_then(|spec| {
        let in_init = spec.init_containers.iter().flatten();
        let found = in_init
            .chain(&spec.containers)
            .find(|c| c.name == SIDECAR_CONTAINER)?;
        Some(Container {
            name: found.name.clone(),
            env: found.env.clone(),
            ports: found.ports.clone(),
            ..Container::default()
        })
    });
    Pod {
        metadata: ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            labels: metadata.labels,
            deletion_timestamp: metadata.deletion_timestamp,
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: sidecar.into_iter().collect(),
            ..PodSpec::default()
        }),
        status: status.map(|s| PodStatus {
            pod_ip: s.pod_ip,
            phase: s.phase,
            ..PodStatus::default()
        }),
    }
}

/// A pod watch event as the proxy cache takes it: pods without a sidecar
/// never enter it (a pod's containers never change), the others are
/// stripped.
pub fn keep_proxies(event: Event<Pod>) -> Option<Event<Pod>> {
    match event {
        Event::Apply(pod) => sidecar(&pod).is_some().then(|| Event::Apply(strip(pod))),
        Event::InitApply(pod) => sidecar(&pod)
            .is_some()
            .then(|| Event::InitApply(strip(pod))),
        Event::Delete(pod) => Some(Event::Delete(strip(pod))),
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}

#[cfg(test)]
mod tests;
