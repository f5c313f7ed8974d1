//! Sealing secret values at rest: ChaCha20-Poly1305 with a 256-bit key from the operator, a
//! random 96-bit nonce per value, and the tenant and secret name as associated data, so a
//! sealed row moved to another tenant or name fails to open. Each sealed value names its key
//! (the first 16 hex digits of the key's sha256), so a rotated store opens with the previous
//! key until it is re-sealed.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::SecretsError;
pub use stepwise_core::secret::Sealed;

struct SealingKey {
    id: String,
    cipher: ChaCha20Poly1305,
}

impl SealingKey {
    fn from_hex(text: &str, what: &str) -> Result<Self, SecretsError> {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            SecretsError::BadKey(format!("{what} is not hex (64 hex digits expected)"))
        })?;
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey(format!(
                "{what} is {} bytes; a key is 32 bytes (64 hex digits; `stepwise secrets keygen` makes one)",
                bytes.len()
            )));
        }
        let id = hex::encode(&Sha256::digest(&bytes)[..8]);
        Ok(Self {
            id,
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }
}

/// The current key and any previous ones (for rotation).
pub struct SecretKeys {
    current: SealingKey,
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.len())
            .finish()
    }
}

fn aad(tenant: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant.len() + name.len() + 1);
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

impl SecretKeys {
    /// Keys from hex text: the current one and previous ones still accepted for opening.
    pub fn from_hex(current: &str, previous: &[String]) -> Result<Self, SecretsError> {
        Ok(Self {
            current: SealingKey::from_hex(current, "the secrets key")?,
            previous: previous
                .iter()
                .enumerate()
                .map(|(i, k)| SealingKey::from_hex(k, &format!("previous secrets key {}", i + 1)))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A new random key, hex.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// Seals `value` for `tenant`'s secret `name` with the current key.
    pub fn seal(&self, tenant: &str, name: &str, value: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = aad(tenant, name);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .expect("ChaCha20-Poly1305 encrypts any input under 256 GiB");
        Sealed {
            key_id: self.current.id.clone(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        }
    }

    /// Opens a sealed value with whichever configured key sealed it.
    pub fn open(&self, tenant: &str, name: &str, sealed: &Sealed) -> Result<Vec<u8>, SecretsError> {
        let fail = || SecretsError::Unreadable {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(fail)?;
        let nonce = hex::decode(&sealed.nonce).map_err(|_| fail())?;
        let ciphertext = hex::decode(&sealed.ciphertext).map_err(|_| fail())?;
        if nonce.len() != 12 {
            return Err(fail());
        }
        let aad = aad(tenant, name);
        key.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| fail())
    }

    /// Whether `sealed` was sealed with the current key.
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.current.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_tenant_and_name() {
        let keys = SecretKeys::from_hex(&SecretKeys::generate(), &[]).unwrap();
        let sealed = keys.seal("acme", "STRIPE_KEY", b"sk_live_123");
        assert!(!sealed.ciphertext.contains(&hex::encode(b"sk_live_123")));
        assert_eq!(
            keys.open("acme", "STRIPE_KEY", &sealed).unwrap(),
            b"sk_live_123"
        );
        assert!(keys.open("other", "STRIPE_KEY", &sealed).is_err());
        assert!(keys.open("acme", "OTHER", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..2, "00");
        assert!(keys.open("acme", "STRIPE_KEY", &tampered).is_err());
    }

    #[test]
    fn a_previous_key_still_opens_what_it_sealed() {
        let (old, new) = (SecretKeys::generate(), SecretKeys::generate());
        let sealed = SecretKeys::from_hex(&old, &[])
            .unwrap()
            .seal("t", "N", b"v");
        let rotated = SecretKeys::from_hex(&new, &[old]).unwrap();
        assert!(!rotated.is_current(&sealed));
        assert_eq!(rotated.open("t", "N", &sealed).unwrap(), b"v");
        let without = SecretKeys::from_hex(&new, &[]).unwrap();
        assert!(without.open("t", "N", &sealed).is_err());
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert!(
            SecretKeys::from_hex("zz", &[])
                .unwrap_err()
                .to_string()
                .contains("hex")
        );
        assert!(
            SecretKeys::from_hex("abcd", &[])
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
    }
}
