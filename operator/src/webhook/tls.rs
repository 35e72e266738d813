//! The webhook's serving certificate, reloaded when its files change:
//! cert-manager (or a `helm upgrade`) rotates the Secret, the kubelet swaps
//! the mounted files, and new connections get the new certificate without
//! a restart. Connections already open keep the one they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

/// The mounted `kubernetes.io/tls` Secret's two files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// `tls.crt` and `tls.key` in `dir`, as a TLS Secret mounts them.
    pub fn in_dir(dir: &Path) -> Self {
        CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {detail}")]
    BadPem { path: PathBuf, detail: String },
    #[error("{cert} and {key}: {source}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Holds the files' last content and publishes a new config when it changes.
pub struct CertReloader {
    files: CertFiles,
    loaded: (Vec<u8>, Vec<u8>),
    sender: watch::Sender<Arc<ServerConfig>>,
}

/// What one check of the files found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Reloaded,
    /// The new content is unusable (or half-written); the old certificate
    /// keeps serving and the next change is tried again.
    Failed(TlsError),
}

impl CertReloader {
    /// Loads the files once; an error here means the webhook cannot start.
    pub fn load(files: CertFiles) -> Result<(Self, watch::Receiver<Arc<ServerConfig>>), TlsError> {
        let loaded = read_pair(&files)?;
        let config = server_config(&files, &loaded.0, &loaded.1)?;
        let (sender, receiver) = watch::channel(config);
        let reloader = CertReloader {
            files,
            loaded,
            sender,
        };
        Ok((reloader, receiver))
    }

    /// Sees each certificate the reloader publishes from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ServerConfig>> {
        self.sender.subscribe()
    }

    pub fn check(&mut self) -> Reload {
        let pair = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(error) => return Reload::Failed(error),
        };
        if pair == self.loaded {
            return Reload::Unchanged;
        }
        let built = server_config(&self.files, &pair.0, &pair.1);
        // Remembered either way: a bad pair is reported once, not every tick.
        self.loaded = pair;
        match built {
            Ok(config) => {
                self.sender.send_replace(config);
                Reload::Reloaded
            }
            Err(error) => Reload::Failed(error),
        }
    }

    /// Checks every `interval` until the server stops listening.
    pub async fn run(mut self, interval: Duration, on_reload: impl Fn(&Reload) + Send) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.sender.closed() => return,
                _ = ticker.tick() => {}
            }
            let reload = self.check();
            on_reload(&reload);
        }
    }
}

fn read_pair(files: &CertFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}

/// TLS 1.2+ with the ring provider, offering HTTP/2 and HTTP/1.1.
pub fn server_config(
    files: &CertFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let bad_pem = |path: &Path, error: rustls::pki_types::pem::Error| TlsError::BadPem {
        path: path.to_path_buf(),
        detail: error.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(&files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad_pem(&files.key, e))?;
    let rejected = |source| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
