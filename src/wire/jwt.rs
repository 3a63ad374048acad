//! Signed tokens as passwords (`[auth.jwt]`): a user not configured for SCRAM sends a JWT in the
//! password message; it is verified (RS256/ES256 ... with the keys of a JWKS or PEM file, `iss`,
//! `aud`, `exp` and `nbf` checked; HMAC and `none` are never accepted, so a public key can not be
//! used as a shared secret), and the user's roles and attributes come from its claims. Parsing
//! and verification are jsonwebtoken's; this module only picks the key and maps the claims.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

use crate::config::JwtConfig;
use crate::error::{Error, Result};
use crate::policy::Claimed;

/// Validate `[auth.jwt]` at startup: an issuer, an audience, exactly one key source that
/// loads, and asymmetric algorithms only.
pub fn check_config(c: &JwtConfig) -> Result<()> {
    let bad = |m: String| Err(Error::Config(format!("auth.jwt: {m}")));
    if c.issuer.is_empty() || c.audience.is_empty() {
        return bad("issuer and audience are required".into());
    }
    if c.jwks_file.is_some() == c.public_key_file.is_some() {
        return bad("set one of jwks_file and public_key_file".into());
    }
    if c.algorithms.is_empty() {
        return bad("algorithms is empty".into());
    }
    for a in &c.algorithms {
        algorithm(a).map_err(|e| Error::Config(format!("auth.jwt: {e}")))?;
    }
    if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
        return bad("no signature backend in this build".into());
    }
    Keys::load(c).map_err(|e| Error::Config(format!("auth.jwt: {e}")))?;
    Ok(())
}

fn algorithm(name: &str) -> std::result::Result<Algorithm, String> {
    use Algorithm as A;
    match name.parse::<Algorithm>() {
        Ok(a @ (A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512)) => Ok(a),
        Ok(a @ (A::ES256 | A::ES384 | A::EdDSA)) => Ok(a),
        _ => Err(format!(
            "algorithm {name:?} is not accepted (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        )),
    }
}

/// The verification keys, from a JWKS document or one PEM key.
enum Keys {
    Set(JwkSet),
    Pem(Box<DecodingKey>),
}

impl Keys {
    fn path(c: &JwtConfig) -> Option<&PathBuf> {
        c.jwks_file.as_ref().or(c.public_key_file.as_ref())
    }

    fn load(c: &JwtConfig) -> std::result::Result<Keys, String> {
        let path = Self::path(c).ok_or("no key file")?;
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if c.jwks_file.is_some() {
            let set: JwkSet = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a JWKS document: {e}", path.display()))?;
            return Ok(Keys::Set(set));
        }
        let key = DecodingKey::from_rsa_pem(&bytes)
            .or_else(|_| DecodingKey::from_ec_pem(&bytes))
            .or_else(|_| DecodingKey::from_ed_pem(&bytes))
            .map_err(|e| format!("{} is not a PEM public key: {e}", path.display()))?;
        Ok(Keys::Pem(Box::new(key)))
    }

    /// The key for a token with header `kid`.
    fn key(&self, kid: Option<&str>) -> std::result::Result<DecodingKey, String> {
        match self {
            Keys::Pem(k) => Ok(k.as_ref().clone()),
            Keys::Set(set) => {
                let jwk = match kid {
                    Some(kid) => set.find(kid),
                    None if set.keys.len() == 1 => set.keys.first(),
                    None => None,
                }
                .ok_or("no key of the configured set matches the token's kid")?;
                DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))
            }
        }
    }
}

/// Verifies tokens; the key file is read again when it changes.
pub struct JwtVerifier {
    config: JwtConfig,
    keys: Mutex<(Option<SystemTime>, std::sync::Arc<Keys>)>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.config.issuer)
            .finish()
    }
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<JwtVerifier> {
        let keys = Keys::load(&config).map_err(|e| Error::Config(format!("auth.jwt: {e}")))?;
        let mtime = Keys::path(&config)
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        Ok(JwtVerifier {
            config,
            keys: Mutex::new((mtime, std::sync::Arc::new(keys))),
        })
    }

    pub fn allow_without_tls(&self) -> bool {
        self.config.allow_without_tls
    }

    /// The keys in force: reloaded if the file changed; a file that no longer loads keeps the
    /// previous keys (logged).
    fn keys(&self) -> std::sync::Arc<Keys> {
        let mut guard = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mtime = Keys::path(&self.config)
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        if mtime != guard.0 {
            match Keys::load(&self.config) {
                Ok(k) => *guard = (mtime, std::sync::Arc::new(k)),
                Err(e) => {
                    tracing::error!(error = %e, "auth.jwt keys did not reload; the old keys stay")
                }
            }
        }
        guard.1.clone()
    }

    /// Verify `token` for `user`: what its claims give the user, or why it is refused (for the
    /// log, never for the client).
    pub fn verify(&self, token: &str, user: &str) -> std::result::Result<Claimed, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let accepted = self
            .config
            .algorithms
            .iter()
            .filter_map(|a| algorithm(a).ok())
            .collect::<Vec<_>>();
        if !accepted.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let key = self.keys().key(header.kid.as_deref())?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = self.config.leeway_secs;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
                .map_err(|e| format!("token: {e}"))?;
        let claims = data.claims;
        let name = claims
            .get(&self.config.user_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no {} claim", self.config.user_claim))?;
        if name != user {
            return Err(format!("the token is for {name:?}, not {user:?}"));
        }
        let roles = match claims.get(&self.config.roles_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => {
                s.split_whitespace().map(str::to_string).collect()
            }
            _ => vec![],
        };
        let mut attributes = BTreeMap::new();
        for key in &self.config.attribute_claims {
            if let Some(v) = claims.get(key).and_then(attribute) {
                attributes.insert(key.clone(), v);
            }
        }
        Ok(Claimed { roles, attributes })
    }
}

/// A claim as an attribute value (strings, numbers, booleans; anything else is left out, so
/// a filter needing it denies).
fn attribute(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::String(s) => toml::Value::String(s.clone()),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        _ => return None,
    })
}

#[async_trait]
impl AuthSource<Claimed> for JwtVerifier {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Claimed>> {
        let user = login.user().unwrap_or_default();
        let token = std::str::from_utf8(presented).unwrap_or_default().trim();
        match self.verify(token, user) {
            Ok(c) => Ok(Some(c)),
            Err(why) => {
                tracing::warn!(user, why, "token login refused");
                Err(PgWireError::InvalidPassword(user.to_owned()))
            }
        }
    }
}
