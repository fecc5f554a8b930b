use std::collections::BTreeMap;

use k8s_discovery::names::{TOKEN_KEY, token_secret_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rand::RngCore;

use super::{BuildError, child_meta};
use crate::crd::LingmaInstance;

/// A fresh gateway-to-sidecar token: 32 random bytes, hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The per-instance token Secret. The caller passes the token already stored when there is
/// one, so re-applying never rotates it.
pub fn desired_token_secret(instance: &LingmaInstance, token: &str) -> Result<Secret, BuildError> {
    Ok(Secret {
        metadata: child_meta(instance, token_secret_name(&instance.name_any()))?,
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::instance;

    #[test]
    fn token_secret_holds_the_given_token_and_is_owned() {
        let secret = desired_token_secret(
            &instance(serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}})),
            "abc",
        )
        .expect("builds");
        assert_eq!(secret.metadata.name.as_deref(), Some("team-sidecar-token"));
        assert_eq!(secret.data.as_ref().expect("data")["token"].0, b"abc");
        assert!(secret.metadata.owner_references.is_some());
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
