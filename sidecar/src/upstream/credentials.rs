//! A variant's credential: one file per key in the mounted Secret
//! `aiflags-credentials`, read on every use because kubelet rotates Secret
//! files in place.

use std::path::Path;

/// Why a credential cannot be used; the message names the key, never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CredentialError {
    #[error(
        "credential {0:?}: no --credentials-dir (AIFLAGS_CREDENTIALS_DIR) is set; mount the Secret aiflags-credentials"
    )]
    NoDirectory(String),
    #[error("credential {0:?} cannot be read; add the key to the Secret aiflags-credentials")]
    Unreadable(String),
    #[error("credential {0:?} is empty; put the API key in the Secret aiflags-credentials")]
    Empty(String),
}

/// The trimmed value of credential `key`; an empty one is an error, never `Bearer `.
pub(crate) async fn read_credential(
    dir: Option<&Path>,
    key: &str,
) -> Result<String, CredentialError> {
    let dir = dir.ok_or_else(|| CredentialError::NoDirectory(key.to_string()))?;
    let text = tokio::fs::read_to_string(dir.join(key))
        .await
        .map_err(|_| CredentialError::Unreadable(key.to_string()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(CredentialError::Empty(key.to_string()));
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_credential_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("partner"), " \n").unwrap();
        std::fs::write(dir.path().join("openai"), "sk-1\n").unwrap();
        let read = |key: &'static str| read_credential(Some(dir.path()), key);
        assert_eq!(read("openai").await.unwrap(), "sk-1");
        let empty = read("partner").await.unwrap_err();
        assert_eq!(empty, CredentialError::Empty("partner".into()));
        assert!(empty.to_string().contains("\"partner\" is empty"));
        assert!(matches!(
            read("missing").await,
            Err(CredentialError::Unreadable(_))
        ));
        assert!(matches!(
            read_credential(None, "x").await,
            Err(CredentialError::NoDirectory(_))
        ));
    }
}
