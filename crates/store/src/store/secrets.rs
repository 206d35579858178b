//! The store's side of `secrets.key`: sealing and opening signing secrets, the canary that
//! proves the key at open, and re-sealing under a new key.

use super::*;

impl Store {
    /// Fails with [`Error::WrongKey`] unless the store's canary opens with one of the keys.
    /// A store without a canary (written before it existed) proves its key by its first
    /// subscription's secrets, then gets a canary.
    pub(super) fn check_key(&self) -> Result<()> {
        match self.db.get(CANARY_KEY)? {
            Some(sealed) => match self.sealer.open(&sealed, CANARY_KEY, CANARY_KEY) {
                Ok(plain) if plain == CANARY_PLAINTEXT => Ok(()),
                Ok(_) | Err(Error::Unseal) => Err(Error::WrongKey),
                Err(e) => Err(e),
            },
            None => {
                // The first record that decodes, or whose secret does not open, decides;
                // a damaged record decides nothing.
                let mut proven = false;
                for entry in self.subscriptions.iter() {
                    match self.decode(&entry?.1) {
                        Ok(_) => {
                            proven = true;
                            break;
                        }
                        Err(Error::Unseal) => return Err(Error::WrongKey),
                        Err(_) => {}
                    }
                }
                // Secrets that opened may have needed a previous key: the canary must not
                // vouch for the current key alone until `reseal` has moved them.
                if proven && self.sealer.has_previous() {
                    return Ok(());
                }
                self.write_canary()
            }
        }
    }

    /// Seals the canary under the current key, durably.
    pub(super) fn write_canary(&self) -> Result<()> {
        let sealed = self.sealer.seal(CANARY_PLAINTEXT, CANARY_KEY)?;
        self.db.insert(CANARY_KEY, sealed)?;
        self.db.flush()?;
        Ok(())
    }

    /// Seals every signing secret again under the current key, then the canary, so that
    /// the previous keys can be dropped from the configuration. Returns the number of
    /// subscriptions resealed. Blocking; the store is flushed before it returns.
    pub fn reseal(&self) -> Result<usize> {
        let mut count = 0;
        for entry in self.subscriptions.iter() {
            let sub = self.decode(&entry?.1)?;
            // Through `apply`, like every write: one change per subscription.
            self.apply(Change::Upsert(sub))?;
            count += 1;
        }
        self.flush()?;
        self.write_canary()?;
        Ok(count)
    }

    pub(super) fn seal(&self, sub: &Subscription) -> Result<Record> {
        let keys = sub
            .keys
            .iter()
            .map(|k| {
                Ok(SealedKey {
                    sealed: BASE64.encode(
                        self.sealer
                            .seal(k.secret.as_bytes(), &key_binding(&sub.id, k.expires_at_ms))?,
                    ),
                    expires_at_ms: k.expires_at_ms,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Record {
            id: sub.id,
            org: sub.org.clone(),
            url: sub.url.clone(),
            description: sub.description.clone(),
            events: sub.events.clone(),
            enabled: sub.enabled,
            disabled_reason: sub.disabled_reason.clone(),
            max_concurrency: sub.max_concurrency,
            rate_limit_per_sec: sub.rate_limit_per_sec,
            consecutive_failures: sub.consecutive_failures,
            failing_since_ms: sub.failing_since_ms,
            last_success_ms: sub.last_success_ms,
            keys,
            created_at_ms: sub.created_at_ms,
            updated_at_ms: sub.updated_at_ms,
            version: sub.version,
        })
    }

    pub(super) fn decode(&self, raw: &[u8]) -> Result<Subscription> {
        let r: Record = serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))?;
        let keys = self.unseal(&r)?;
        Ok(from_record(r, keys))
    }

    pub(super) fn decode_without_keys(&self, raw: &[u8]) -> Result<Subscription> {
        let r: Record = serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(from_record(r, Vec::new()))
    }

    pub(super) fn unseal(&self, r: &Record) -> Result<Vec<SigningKey>> {
        r.keys
            .iter()
            .map(|k| {
                let sealed = BASE64
                    .decode(&k.sealed)
                    .map_err(|e| Error::Corrupt(e.to_string()))?;
                let plain = self.sealer.open(
                    &sealed,
                    &key_binding(&r.id, k.expires_at_ms),
                    r.id.as_bytes(),
                )?;
                let secret =
                    Secret::from_bytes(plain).map_err(|e| Error::Corrupt(e.to_string()))?;
                Ok(SigningKey {
                    secret,
                    expires_at_ms: k.expires_at_ms,
                })
            })
            .collect()
    }
}

pub(super) fn from_record(r: Record, keys: Vec<SigningKey>) -> Subscription {
    Subscription {
        id: r.id,
        org: r.org,
        url: r.url,
        description: r.description,
        events: r.events,
        enabled: r.enabled,
        disabled_reason: r.disabled_reason,
        max_concurrency: r.max_concurrency,
        rate_limit_per_sec: r.rate_limit_per_sec,
        consecutive_failures: r.consecutive_failures,
        failing_since_ms: r.failing_since_ms,
        last_success_ms: r.last_success_ms,
        keys,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
        version: r.version,
    }
}

/// The associated data of a sealed signing key: its subscription and its expiry, so that
/// neither can be swapped on disk (a rotated-out secret made to sign forever).
pub(super) fn key_binding(id: &Uuid, expires_at_ms: Option<u64>) -> Vec<u8> {
    let mut aad = id.as_bytes().to_vec();
    match expires_at_ms {
        Some(at) => {
            aad.push(1);
            aad.extend_from_slice(&at.to_be_bytes());
        }
        None => aad.push(0),
    }
    aad
}
