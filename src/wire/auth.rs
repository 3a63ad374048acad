//! Startup and authentication: SCRAM-SHA-256 (and -PLUS with TLS) against stored verifiers,
//! the TLS-required rule, the connection limit, and the ParameterStatus set sent after login.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use hmac::{Hmac, Mac};
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret, gen_salted_password};
use pgwire::api::auth::{
    AuthDriver, AuthSource, LoginInfo, Password, ServerParameterProvider, StartupHandler,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_APPLICATION_NAME, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sha2::Sha256;

use crate::config::{PG_VERSION, UserSpec};
use crate::error::{Error, Result, SqlState};

/// SCRAM verifiers by user name; passwords are never kept.
#[derive(Debug)]
pub struct UserStore {
    verifiers: HashMap<String, Verifier>,
    iterations: usize,
    /// Keys the deterministic fake salt of unknown users, so probing cannot tell them apart.
    mock_key: [u8; 32],
}

impl UserStore {
    pub fn new(users: &[UserSpec], iterations: usize) -> UserStore {
        let verifiers = users
            .iter()
            .map(|u| (u.name.clone(), Verifier::new(&u.password.0, iterations)))
            .collect();
        UserStore {
            verifiers,
            iterations,
            mock_key: rand::random(),
        }
    }

    fn mock_secret(&self, user: &str) -> ScramSecret {
        let salt = match Hmac::<Sha256>::new_from_slice(&self.mock_key) {
            Ok(mut m) => {
                m.update(user.as_bytes());
                m.finalize().into_bytes()[..16].to_vec()
            }
            Err(_) => vec![0u8; 16],
        };
        let keys: [u8; 32] = rand::random();
        ScramSecret::Verifier {
            salt,
            iterations: self.iterations,
            stored_key: keys.to_vec(),
            server_key: keys.to_vec(),
        }
    }
}

#[async_trait]
impl AuthSource for UserStore {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered; a cleartext path must never succeed.
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        let secret = match self.verifiers.get(user) {
            Some(v) => v.secret(),
            None => self.mock_secret(user),
        };
        Ok((secret, None))
    }
}

/// A stored SCRAM verifier (salt, iterations, StoredKey, ServerKey), as PostgreSQL keeps it.
#[derive(Clone)]
struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(<redacted>)")
    }
}

impl Verifier {
    /// PostgreSQL's verifier (StoredKey, ServerKey) for a password; the password is not kept.
    fn new(password: &str, iterations: usize) -> Verifier {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            // Not produced by verifier_from_salted_password; empty keys match no proof (fail closed).
            ScramSecret::SaltedPassword { salt, .. } => Verifier {
                salt,
                iterations,
                stored_key: vec![],
                server_key: vec![],
            },
        }
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// The ParameterStatus messages sent after authentication.
#[derive(Debug, Clone)]
pub struct Parameters {
    admins: Vec<String>,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let meta = client.metadata();
        let user = meta.get(METADATA_USER).cloned().unwrap_or_default();
        // Report the session's effective values, the same ones SHOW gives.
        let mut settings =
            crate::session::settings::Settings::new(&user, self.admins.contains(&user), 0);
        settings.apply_startup(meta);
        let get = |k: &str| settings.get(k).unwrap_or_default();
        let mut p = HashMap::new();
        p.insert("server_version".into(), PG_VERSION.into());
        p.insert("server_encoding".into(), "UTF8".into());
        p.insert("client_encoding".into(), "UTF8".into());
        p.insert("DateStyle".into(), get("datestyle"));
        p.insert("IntervalStyle".into(), get("intervalstyle"));
        p.insert("TimeZone".into(), get("timezone"));
        p.insert("integer_datetimes".into(), "on".into());
        p.insert("standard_conforming_strings".into(), "on".into());
        p.insert(
            "application_name".into(),
            meta.get(METADATA_APPLICATION_NAME)
                .cloned()
                .unwrap_or_default(),
        );
        p.insert("is_superuser".into(), get("is_superuser"));
        p.insert("session_authorization".into(), user);
        p.insert("default_transaction_read_only".into(), "off".into());
        p.insert("in_hot_standby".into(), "off".into());
        Some(p)
    }
}

/// The server-wide startup handler.
pub struct Startup {
    sasl: SASLAuthStartupHandler<Parameters>,
    tls_required: bool,
    /// Users that log in with SCRAM; with `[auth.jwt]`, every other name presents a token.
    scram_users: std::collections::HashSet<String>,
    jwt: Option<Jwt>,
}

/// Token logins: the verifier and the driver running the cleartext exchange that carries it.
struct Jwt {
    verifier: Arc<super::jwt::JwtVerifier>,
    driver: AuthDriver<Parameters, crate::policy::Claimed>,
}

impl Startup {
    pub fn new(
        users: &[UserSpec],
        iterations: usize,
        cert_pem: Option<&[u8]>,
        tls_required: bool,
        jwt: Option<&crate::config::JwtConfig>,
    ) -> Result<Startup> {
        let store = Arc::new(UserStore::new(users, iterations));
        let mut scram = ScramAuth::new(store);
        scram.set_iterations(iterations);
        if let Some(pem) = cert_pem {
            scram.configure_certificate(pem).map_err(|e| {
                Error::Config(format!("tls certificate for SCRAM channel binding: {e}"))
            })?;
        }
        let admins = users
            .iter()
            .filter(|u| u.admin)
            .map(|u| u.name.clone())
            .collect();
        let parameters = Parameters { admins };
        let jwt = match jwt {
            Some(c) => Some(Jwt {
                verifier: Arc::new(super::jwt::JwtVerifier::new(c.clone())?),
                driver: AuthDriver::new(parameters.clone()),
            }),
            None => None,
        };
        let sasl = SASLAuthStartupHandler::new(Arc::new(parameters)).with_scram(scram);
        Ok(Startup {
            sasl,
            tls_required,
            scram_users: users.iter().map(|u| u.name.clone()).collect(),
            jwt,
        })
    }
}

/// One connection's startup: refuses first when the server is full or TLS is required.
pub struct ConnectionStartup {
    shared: Arc<Startup>,
    reject: Option<Arc<Error>>,
    /// This connection logs in with a token (set on its startup message).
    token_login: std::sync::atomic::AtomicBool,
}

impl ConnectionStartup {
    pub fn new(shared: Arc<Startup>, reject: Option<Arc<Error>>) -> Self {
        ConnectionStartup {
            shared,
            reject,
            token_login: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

fn fatal(code: SqlState, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.code().into(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for ConnectionStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = &message {
            if let Some(e) = &self.reject {
                return Err(fatal(e.state(), e.client_message()));
            }
            if self.shared.tls_required && !client.is_secure() {
                return Err(fatal(
                    SqlState::InvalidAuthorizationSpecification,
                    "this server requires TLS: connect with sslmode=require".into(),
                ));
            }
        }
        use std::sync::atomic::Ordering;
        let Some(jwt) = &self.shared.jwt else {
            return self.shared.sasl.on_startup(client, message).await;
        };
        match message {
            PgWireFrontendMessage::Startup(startup)
                if !startup
                    .parameters
                    .get("user")
                    .is_some_and(|u| self.shared.scram_users.contains(u)) =>
            {
                if !client.is_secure() && !jwt.verifier.allow_without_tls() {
                    return Err(fatal(
                        SqlState::InvalidAuthorizationSpecification,
                        "token logins need TLS: connect with sslmode=require".into(),
                    ));
                }
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                self.token_login.store(true, Ordering::SeqCst);
                let mechanism = CleartextPasswordAuth::new(jwt.verifier.clone()).create();
                jwt.driver.begin_authentication(client, mechanism).await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(m)
                if self.token_login.load(Ordering::SeqCst) =>
            {
                if let AuthOutcome::Authenticated {
                    identity,
                    final_message,
                } = jwt.driver.advance_authentication(client, m).await?
                {
                    // The session reads its roles and attributes from here (wire::state).
                    let Some(claimed) = identity else {
                        return Err(PgWireError::InvalidPassword(
                            client
                                .metadata()
                                .get(METADATA_USER)
                                .cloned()
                                .unwrap_or_default(),
                        ));
                    };
                    client.session_extensions().insert(claimed);
                    jwt.driver
                        .complete_authentication(client, final_message)
                        .await?;
                }
                Ok(())
            }
            other => self.shared.sasl.on_startup(client, other).await,
        }
    }
}
