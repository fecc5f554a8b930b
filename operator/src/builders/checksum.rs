//! The pod-template checksum that rolls the Lingma pods when their accounts change.

use sha2::{Digest, Sha256};

/// Annotation on the pod template: a change of the accounts Secret changes it, so the
/// StatefulSet rolls its pods (each pod reads its account only at start).
pub const ACCOUNTS_CHECKSUM_ANNOTATION: &str = "lingma.io/accounts-checksum";

/// SHA-256 over a secret per-instance key and the accounts, hex. Keyed, so the annotation,
/// readable by anyone who may read the StatefulSet, reveals nothing about the passwords (a
/// plain hash of a short password list could be brute-forced offline). The key is not the
/// sidecar token, so rotating the token does not roll the pods.
pub fn accounts_checksum(key: &str, accounts: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update(accounts);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_follows_the_accounts_and_the_key() {
        let base = accounts_checksum("tok", b"u:p");
        assert_eq!(base.len(), 64);
        assert_eq!(base, accounts_checksum("tok", b"u:p"));
        assert_ne!(base, accounts_checksum("tok", b"u:q"));
        assert_ne!(base, accounts_checksum("other", b"u:p"));
    }
}
