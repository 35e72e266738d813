//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas only one reconciles flags, steps rollouts, writes
//! ConfigMaps and statuses, and offers restarts. Every replica serves the
//! webhook and its metrics.
//!
//! The rules are client-go's: a candidate takes the lease over only once
//! it has seen the lease unchanged for `leaseDuration` by its own clock
//! (never by comparing clocks with the holder); the holder renews every
//! `retryPeriod`, and stops leading if it has not renewed for
//! `renewDeadline`, which is shorter than `leaseDuration`, so it has
//! stopped before anyone may take over. A replica that loses the lease
//! stops its controllers and exits, to start again as a candidate; one
//! that shuts down releases the lease so another takes over at once.
//! Writes are `PUT`s with the `resourceVersion` read, so two candidates
//! cannot both take the same lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15s, 10s, 2s.
    pub fn new(namespace: String, name: String, identity: String) -> LeaseSettings {
        LeaseSettings {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a lease says, as far as the election cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `None` (or empty): released.
    pub holder: Option<String>,
    pub duration: Duration,
    /// Changes at every renewal: what tells a candidate the holder is alive.
    pub renew_time: Option<Timestamp>,
    pub transitions: i32,
    /// Every write changes it, even one within the same microsecond.
    pub version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            version: lease.metadata.resource_version.clone(),
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            ),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What to do about the lease now. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// There is no lease: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Released, or not renewed for its whole duration as we observed it: take it.
    TakeOver,
    /// Someone else holds it; it may expire after this.
    Wait(Duration),
}

/// `observed_at`: when this replica first saw the lease as `record` is
/// (holder, renewal and transitions unchanged since).
pub fn decide(record: Option<&Record>, observed_at: Instant, me: &str, now: Instant) -> Attempt {
    let Some(record) = record else {
        return Attempt::Create;
    };
    match &record.holder {
        Some(holder) if holder == me => Attempt::Renew,
        None => Attempt::TakeOver,
        Some(_) => {
            let unchanged_for = now.saturating_duration_since(observed_at);
            match record.duration.checked_sub(unchanged_for) {
                Some(left) if !left.is_zero() => Attempt::Wait(left),
                _ => Attempt::TakeOver,
            }
        }
    }
}

/// The outcome of one try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// We hold the lease (created, renewed or taken).
    Yes,
    /// Someone else holds it.
    By(String),
    /// Another writer won the race for this version; try again.
    Conflict,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Elector {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Reads the lease and acquires, renews or takes it over when due.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Held, kube::Error> {
        let now = Instant::now();
        let lease = self.api.get_opt(&self.settings.name).await?;
        let record = lease.as_ref().map(Record::of);
        let observed_at = match (&self.observed, &record) {
            (Some((seen, at)), Some(record)) if seen == record => *at,
            _ => now,
        };
        self.observed = record.clone().map(|r| (r, observed_at));
        let me = self.settings.identity.clone();
        let attempt = decide(record.as_ref(), observed_at, &me, now);
        let result = match (attempt, lease) {
            (Attempt::Create, _) => {
                let lease = self.lease(None, 0, None);
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(drop)
            }
            (Attempt::Renew, Some(current)) => {
                let spec = current.spec.clone().unwrap_or_default();
                let lease = self.lease(
                    Some(&current),
                    spec.lease_transitions.unwrap_or(0),
                    spec.acquire_time,
                );
                self.replace(&lease).await
            }
            (Attempt::TakeOver, Some(current)) => {
                let transitions = record.as_ref().map_or(0, |r| r.transitions) + 1;
                let lease = self.lease(Some(&current), transitions, None);
                self.replace(&lease).await
            }
            (Attempt::Wait(_), _) => {
                let holder = record.and_then(|r| r.holder).unwrap_or_default();
                return Ok(Held::By(holder));
            }
            // Renew or take over what does not exist: read again next time.
            (_, None) => return Ok(Held::Conflict),
        };
        match result {
            Ok(()) => {
                self.observed = None;
                Ok(Held::Yes)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Held::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up, if held, so another replica need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let record = Record::of(&current);
        if record.holder.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let mut lease = self.lease(Some(&current), record.transitions, None);
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        self.replace(&lease).await
    }

    /// The lease as this replica writes it: held by it, renewed now.
    fn lease(
        &self,
        current: Option<&Lease>,
        transitions: i32,
        acquired: Option<MicroTime>,
    ) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX),
                ),
                acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// `PUT` with the `resourceVersion` read: fails with 409 if anyone wrote since.
    async fn replace(&self, lease: &Lease) -> Result<(), kube::Error> {
        self.api
            .replace(&self.settings.name, &PostParams::default(), lease)
            .await
            .map(drop)
    }
}

/// This replica's role, as the election task sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Candidate,
    Leading,
    /// It led, then could not renew in time, or saw another holder: it
    /// must stop acting now.
    Lost,
}

/// Watches this replica's role.
#[derive(Clone, Debug)]
pub struct Leadership {
    role: watch::Receiver<Role>,
    /// Keeps the role of [`Leadership::sole`] from ever closing.
    _sole: Option<std::sync::Arc<watch::Sender<Role>>>,
}

impl Leadership {
    /// Always the leader: a single replica, without election.
    pub fn sole() -> Leadership {
        let (tx, rx) = watch::channel(Role::Leading);
        Leadership {
            role: rx,
            _sole: Some(std::sync::Arc::new(tx)),
        }
    }

    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Resolves once leading: `true`, or `false` if the election stopped first.
    pub async fn acquired(&self) -> bool {
        let mut rx = self.role.clone();
        rx.wait_for(|r| *r != Role::Candidate)
            .await
            .is_ok_and(|r| *r == Role::Leading)
    }

    /// Resolves when leadership is lost (or the election stopped).
    pub async fn lost(&self) {
        let mut rx = self.role.clone();
        let _ = rx.wait_for(|r| *r == Role::Lost).await;
    }
}

/// Runs the election until `shutdown` (releasing the lease if held) or
/// until leadership is lost; the returned [`Leadership`] follows it.
pub fn spawn(
    mut elector: Elector,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (role, rx) = watch::channel(Role::Candidate);
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let settings = elector.settings().clone();
        let mut last_renewed: Option<Instant> = None;
        loop {
            let attempt = elector.try_acquire_or_renew().await;
            let now = Instant::now();
            match (&attempt, last_renewed) {
                (Ok(Held::Yes), None) => {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, "leading");
                    last_renewed = Some(now);
                    let _ = role.send(Role::Leading);
                }
                (Ok(Held::Yes), Some(_)) => last_renewed = Some(now),
                (Ok(Held::By(holder)), Some(_)) => {
                    tracing::error!(%holder, "the lease is held by another replica; no longer leading");
                    let _ = role.send(Role::Lost);
                    return;
                }
                (Ok(_) | Err(_), Some(renewed))
                    if now.saturating_duration_since(renewed) >= settings.renew_deadline =>
                {
                    tracing::error!(error = ?attempt.as_ref().err(), deadline = ?settings.renew_deadline, "could not renew the lease in time; no longer leading");
                    let _ = role.send(Role::Lost);
                    return;
                }
                (Err(error), _) => {
                    tracing::warn!(%error, "leader election: reading or writing the lease failed")
                }
                (Ok(_), _) => {}
            }
            tokio::select! {
                () = &mut shutdown => {
                    if last_renewed.is_some() {
                        match elector.release().await {
                            Ok(()) => tracing::info!("lease released"),
                            Err(error) => tracing::warn!(%error, "releasing the lease failed; it expires by itself"),
                        }
                    }
                    return;
                }
                () = tokio::time::sleep(settings.retry_period) => {}
            }
        }
    });
    (
        Leadership {
            role: rx,
            _sole: None,
        },
        task,
    )
}

#[cfg(test)]
mod fake_lease;
#[cfg(test)]
mod tests;
