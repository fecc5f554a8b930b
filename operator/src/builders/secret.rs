use std::collections::BTreeMap;

use k8s_discovery::names::{SIDECAR_TOKENS_SECRET, TOKEN_KEY, TokenEntry, token_secret_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use rand::RngCore;

use super::{BuildError, child_meta, labels, owner_ref};
use crate::crd::LingmaInstance;

/// A fresh gateway-to-sidecar token: 32 random bytes, hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Key of the token Secret holding the key of the pod-template accounts checksum. Never mounted
/// (the pods mount only `token`) and kept when the token is rotated, so a rotation does not
/// roll the pods.
pub const CHECKSUM_KEY: &str = "checksum-key";

/// The per-instance token Secret. The caller passes the token and checksum key already stored
/// when there are, so re-applying never rotates them.
pub fn desired_token_secret(
    instance: &LingmaInstance,
    token: &str,
    checksum_key: &str,
) -> Result<Secret, BuildError> {
    Ok(Secret {
        metadata: child_meta(instance, token_secret_name(&instance.name_any()))?,
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (TOKEN_KEY.to_owned(), ByteString(token.as_bytes().to_vec())),
            (
                CHECKSUM_KEY.to_owned(),
                ByteString(checksum_key.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    })
}

/// This instance's entry of the namespace's one tokens Secret, the only Secret the gateway may
/// read. Applied under the instance's own field manager, so each instance owns only its key;
/// a non-controller owner reference per instance lets garbage collection delete the Secret
/// with the last instance.
pub fn desired_tokens_entry(
    instance: &LingmaInstance,
    token: &str,
    service_uid: &str,
) -> Result<Secret, BuildError> {
    let entry = TokenEntry {
        token: token.to_owned(),
        service_uid: service_uid.to_owned(),
    };
    let mut owner = owner_ref(instance)?;
    owner.controller = Some(false);
    owner.block_owner_deletion = Some(false);
    let mut shared_labels = labels(instance);
    // The instance label would be contested by every instance's manager.
    shared_labels.remove(k8s_discovery::names::LABEL_INSTANCE);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(SIDECAR_TOKENS_SECRET.to_owned()),
            namespace: instance.namespace(),
            labels: Some(shared_labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            instance.name_any(),
            // TokenEntry is two strings: serializing cannot fail.
            ByteString(serde_json::to_vec(&entry).unwrap_or_default()),
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
            "key",
        )
        .expect("builds");
        assert_eq!(secret.metadata.name.as_deref(), Some("team-sidecar-token"));
        assert_eq!(secret.data.as_ref().expect("data")["token"].0, b"abc");
        assert_eq!(
            secret.data.as_ref().expect("data")["checksum-key"].0,
            b"key"
        );
        assert!(secret.metadata.owner_references.is_some());
    }

    #[test]
    fn tokens_entry_carries_token_and_service_uid_under_the_instance_key() {
        let secret = desired_tokens_entry(
            &instance(serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}})),
            "abc",
            "svc-1",
        )
        .expect("builds");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("lingma-sidecar-tokens")
        );
        let entry: TokenEntry =
            serde_json::from_slice(&secret.data.as_ref().expect("data")["team"].0).expect("json");
        assert_eq!(
            entry,
            TokenEntry {
                token: "abc".to_owned(),
                service_uid: "svc-1".to_owned()
            }
        );
        let owner = &secret.metadata.owner_references.expect("owners")[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(false))
        );
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let (a, b) = (generate_token(), generate_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
