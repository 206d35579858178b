//! The store's side of `secrets.key`: sealing and opening signing secrets, the canary that
//! proves the key at open, and re-sealing under a new key.

use hookwire_core::Transform;
use hookwire_core::client_tls::{ClientIdentity, ClientKey, ClientTls};

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
        let ed25519_keys = sub
            .ed25519_keys
            .iter()
            .map(|k| {
                let private = k.private.as_ref().ok_or_else(|| {
                    Error::Corrupt(
                        "an Ed25519 key read without its secret cannot be written".into(),
                    )
                })?;
                let binding = ed25519_binding(&sub.id, &k.public, k.expires_at_ms);
                Ok(SealedEd25519Key {
                    public: BASE64.encode(k.public.as_bytes()),
                    sealed: BASE64.encode(self.sealer.seal(private.as_bytes(), &binding)?),
                    expires_at_ms: k.expires_at_ms,
                })
            })
            .collect::<Result<_>>()?;
        let headers = sub
            .headers
            .iter()
            .map(|h| {
                Ok(if h.secret {
                    let binding = header_binding(&sub.id, &h.name);
                    StoredHeader {
                        name: h.name.clone(),
                        value: None,
                        sealed: Some(
                            BASE64.encode(self.sealer.seal(h.value.as_bytes(), &binding)?),
                        ),
                    }
                } else {
                    StoredHeader {
                        name: h.name.clone(),
                        value: Some(h.value.clone()),
                        sealed: None,
                    }
                })
            })
            .collect::<Result<_>>()?;
        let client_tls = self.seal_client_tls(sub)?;
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
            ed25519_keys,
            headers,
            filter: sub.filter.as_ref().map(|f| f.source().to_owned()),
            transform: sub.transform.as_ref().map(|t| t.source().to_owned()),
            client_tls,
            retry: StoredRetry::of(&sub.retry),
        })
    }

    /// The webhook's TLS settings as stored: the certificate and CA bundle as they are
    /// (neither is secret), the private key sealed.
    fn seal_client_tls(&self, sub: &Subscription) -> Result<Option<StoredClientTls>> {
        let tls = &sub.client_tls;
        if tls.is_empty() {
            return Ok(None);
        }
        let (cert_pem, sealed_key) = match &tls.identity {
            None => (None, None),
            Some(identity) => {
                let key = identity.key.as_ref().ok_or_else(|| {
                    Error::Corrupt("a client key read without its secret cannot be written".into())
                })?;
                let sealed = self
                    .sealer
                    .seal(key.pem().as_bytes(), &client_key_binding(&sub.id))?;
                (Some(identity.cert_pem.clone()), Some(BASE64.encode(sealed)))
            }
        };
        Ok(Some(StoredClientTls {
            cert_pem,
            sealed_key,
            ca_pem: tls.ca_pem.clone(),
        }))
    }

    /// The subscription stored under `org`'s key for `id`, or, when its record cannot be
    /// used (it does not decode, a secret does not open, its filter no longer parses), what
    /// could be read of it, disabled and with its `broken_reason`: one bad row must cost
    /// only its own webhook, and must stay visible so that it can be deleted.
    pub(super) fn decode_row(
        &self,
        org: &str,
        id: Uuid,
        raw: &[u8],
        with_secrets: bool,
    ) -> Subscription {
        let decoded = if with_secrets {
            self.decode(raw)
        } else {
            self.decode_without_keys(raw)
        };
        decoded.unwrap_or_else(|e| {
            metrics::counter!("hookwire_webhook_broken_reads_total").increment(1);
            tracing::warn!(org, webhook_id = %id, error = %e, "A stored webhook cannot be read; it receives nothing until it is deleted or replaced.");
            broken_subscription(org, id, raw, e.to_string())
        })
    }

    pub(super) fn decode(&self, raw: &[u8]) -> Result<Subscription> {
        let r: Record = serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))?;
        let opened = self.unseal(&r)?;
        self.subscription_of(r, Some(opened))
    }

    /// A subscription without its secrets: no signing key, Ed25519 keys without their
    /// private half, secret headers without their value.
    pub(super) fn decode_without_keys(&self, raw: &[u8]) -> Result<Subscription> {
        let r: Record = serde_json::from_slice(raw).map_err(|e| Error::Corrupt(e.to_string()))?;
        self.subscription_of(r, None)
    }

    pub(super) fn unseal(&self, r: &Record) -> Result<Opened> {
        let keys = r
            .keys
            .iter()
            .map(|k| {
                let plain = self.sealer.open(
                    &unbase64(&k.sealed)?,
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
            .collect::<Result<_>>()?;
        let ed25519 = r
            .ed25519_keys
            .iter()
            .map(|k| {
                let public = public_key(&k.public)?;
                let binding = ed25519_binding(&r.id, &public, k.expires_at_ms);
                let seed = self
                    .sealer
                    .open(&unbase64(&k.sealed)?, &binding, &binding)?;
                let private =
                    Ed25519Key::from_bytes(&seed).map_err(|e| Error::Corrupt(e.to_string()))?;
                if private.public_key() != public {
                    return Err(Error::Corrupt(
                        "an Ed25519 key does not match its public key".into(),
                    ));
                }
                Ok(private)
            })
            .collect::<Result<_>>()?;
        let headers = r
            .headers
            .iter()
            .map(|h| match &h.sealed {
                Some(sealed) => {
                    let binding = header_binding(&r.id, &h.name);
                    let plain = self.sealer.open(&unbase64(sealed)?, &binding, &binding)?;
                    String::from_utf8(plain).map_err(|e| Error::Corrupt(e.to_string()))
                }
                None => Ok(h.value.clone().unwrap_or_default()),
            })
            .collect::<Result<_>>()?;
        let client_key = match r.client_tls.as_ref().and_then(|t| t.sealed_key.as_ref()) {
            None => None,
            Some(sealed) => {
                let binding = client_key_binding(&r.id);
                let plain = self.sealer.open(&unbase64(sealed)?, &binding, &binding)?;
                Some(ClientKey::new(
                    String::from_utf8(plain).map_err(|e| Error::Corrupt(e.to_string()))?,
                ))
            }
        };
        Ok(Opened {
            keys,
            ed25519,
            headers,
            client_key,
        })
    }

    /// The subscription of a record, with what `unseal` opened, or without secrets.
    pub(super) fn subscription_of(
        &self,
        r: Record,
        opened: Option<Opened>,
    ) -> Result<Subscription> {
        let (keys, mut ed25519, mut header_values, client_key) = match opened {
            Some(o) => (
                o.keys,
                Some(o.ed25519.into_iter()),
                Some(o.headers.into_iter()),
                o.client_key,
            ),
            None => (Vec::new(), None, None, None),
        };
        let client_tls = match r.client_tls {
            None => ClientTls::default(),
            Some(stored) => ClientTls {
                identity: stored.cert_pem.map(|cert_pem| ClientIdentity {
                    cert_pem,
                    key: client_key,
                }),
                ca_pem: stored.ca_pem,
            },
        };
        let ed25519_keys = r
            .ed25519_keys
            .iter()
            .map(|k| {
                Ok(AsymmetricKey {
                    public: public_key(&k.public)?,
                    private: ed25519.as_mut().and_then(Iterator::next),
                    expires_at_ms: k.expires_at_ms,
                })
            })
            .collect::<Result<_>>()?;
        let headers = r
            .headers
            .into_iter()
            .map(|h| {
                let opened = header_values.as_mut().and_then(Iterator::next);
                CustomHeader {
                    secret: h.sealed.is_some(),
                    value: opened.unwrap_or_else(|| h.value.unwrap_or_default()),
                    name: h.name,
                }
            })
            .collect();
        let filter = r
            .filter
            .as_deref()
            .map(|source| self.filters.get(source, Filter::load));
        let transform = r
            .transform
            .as_deref()
            .map(|source| self.transforms.get(source, Transform::load));
        Ok(Subscription {
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
            ed25519_keys,
            headers,
            filter,
            transform,
            client_tls,
            retry: r
                .retry
                .as_ref()
                .map(StoredRetry::policy)
                .unwrap_or_default(),
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            version: r.version,
            broken_reason: None,
        })
    }
}

/// What [`Store::unseal`] opens of a record, in the record's order.
pub(super) struct Opened {
    keys: Vec<SigningKey>,
    ed25519: Vec<Ed25519Key>,
    headers: Vec<String>,
    client_key: Option<ClientKey>,
}

/// A webhook's TLS settings in its record.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoredClientTls {
    /// The client certificate chain (PEM), when one is set.
    #[serde(default)]
    cert_pem: Option<String>,
    /// Base64 of its sealed private key (PEM).
    #[serde(default)]
    sealed_key: Option<String>,
    /// The CA bundle (PEM), when one is set.
    #[serde(default)]
    ca_pem: Option<String>,
}

/// Parsed filters (and transforms) by their source, so that reading a webhook does not
/// parse its expression again. Bounded: past [`ParsedCache::MAX`] sources it starts over.
/// A stored expression the current rules refuse still loads ([`Filter::load`],
/// [`Transform::load`]): it fails its own webhook's deliveries, never the reading of the
/// organization's other webhooks.
#[derive(Debug)]
pub(super) struct ParsedCache<T>(std::sync::Mutex<std::collections::HashMap<String, T>>);

impl<T> Default for ParsedCache<T> {
    fn default() -> Self {
        Self(std::sync::Mutex::default())
    }
}

impl<T: Clone> ParsedCache<T> {
    const MAX: usize = 4096;

    fn get(&self, source: &str, load: fn(&str) -> T) -> T {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(parsed) = cache.get(source) {
            return parsed.clone();
        }
        let parsed = load(source);
        if cache.len() >= Self::MAX {
            cache.clear();
        }
        cache.insert(source.to_owned(), parsed.clone());
        parsed
    }
}

/// What can be read of a record that cannot be used: its plain fields when its JSON still
/// parses as a record, else only its key's organization and id. No secret, no filter,
/// disabled.
fn broken_subscription(org: &str, id: Uuid, raw: &[u8], reason: String) -> Subscription {
    let record = serde_json::from_slice::<Record>(raw).ok();
    let (url, description, events, created_at_ms, updated_at_ms, version) = match record {
        Some(r) => (
            r.url,
            r.description,
            r.events,
            r.created_at_ms,
            r.updated_at_ms,
            r.version,
        ),
        None => Default::default(),
    };
    Subscription {
        id,
        org: org.to_owned(),
        url,
        description,
        events,
        enabled: false,
        disabled_reason: Some("broken".into()),
        max_concurrency: None,
        rate_limit_per_sec: None,
        consecutive_failures: 0,
        failing_since_ms: None,
        last_success_ms: None,
        keys: Vec::new(),
        ed25519_keys: Vec::new(),
        headers: Vec::new(),
        filter: None,
        transform: None,
        client_tls: ClientTls::default(),
        retry: Default::default(),
        created_at_ms,
        updated_at_ms,
        version,
        broken_reason: Some(reason),
    }
}

fn unbase64(text: &str) -> Result<Vec<u8>> {
    BASE64
        .decode(text)
        .map_err(|e| Error::Corrupt(e.to_string()))
}

fn public_key(text: &str) -> Result<PublicKey> {
    PublicKey::from_bytes(&unbase64(text)?).map_err(|e| Error::Corrupt(e.to_string()))
}

/// The associated data of a sealed Ed25519 key: its subscription, public key and expiry.
pub(super) fn ed25519_binding(
    id: &Uuid,
    public: &PublicKey,
    expires_at_ms: Option<u64>,
) -> Vec<u8> {
    let mut aad = b"ed25519\0".to_vec();
    aad.extend_from_slice(public.as_bytes());
    aad.extend(key_binding(id, expires_at_ms));
    aad
}

/// The associated data of a client certificate's sealed key: its subscription, so that
/// it cannot be moved to another webhook.
pub(super) fn client_key_binding(id: &Uuid) -> Vec<u8> {
    let mut aad = b"client-key\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// The associated data of a secret header's sealed value: its subscription and name, so
/// that it cannot be moved to another webhook or header.
pub(super) fn header_binding(id: &Uuid, name: &str) -> Vec<u8> {
    let mut aad = b"header\0".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
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
