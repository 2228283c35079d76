//! Who a connection acts as: admission (the server's limit on open
//! connections), authentication (a token, or a client certificate at the
//! TLS handshake) and what its principal may do.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fluvio_protocol::requests::{AuthenticateRequest, AuthenticateResponse};
use fluvio_protocol::{ApiKind, ErrorCode};

use super::error::ServerError;
use crate::ServerContext;
use crate::security::{AccessPolicy, Principal, Role};

/// Counts a connection as open until dropped.
pub(super) struct CountedConnection(Arc<ServerContext>);

impl CountedConnection {
    /// Counts a new connection; also returns how many are open with it.
    pub(super) fn enter(context: &Arc<ServerContext>) -> (CountedConnection, usize) {
        let open = context.open_connections.fetch_add(1, Ordering::Relaxed) + 1;
        (CountedConnection(Arc::clone(context)), open)
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who a connection acts as.
#[derive(Clone)]
pub(super) struct Session {
    access: Option<Arc<AccessPolicy>>,
    principal: Option<Arc<Principal>>,
}

impl Session {
    /// A connection's session: authenticated already when `principal` is
    /// known (a client certificate named it).
    pub(super) fn new(access: Option<Arc<AccessPolicy>>, principal: Option<Arc<Principal>>) -> Session {
        Session { access, principal }
    }
}

impl Session {
    /// Whether the connection must still authenticate: the server requires
    /// credentials and none were presented yet. Until it has, it may send
    /// nothing but a small `Authenticate` (see `connection/mod.rs`).
    pub(super) fn awaits_login(&self) -> bool {
        self.access.is_some() && self.principal.is_none()
    }

    /// The name a principal's quotas are counted under: `None` on a server
    /// without an access file (or before login), where only the
    /// server-wide limits apply.
    pub(super) fn quota_key(&self) -> Option<&str> {
        self.access.as_ref().and(self.principal.as_deref()).map(|principal| principal.name.as_str())
    }

    /// The principal, or `None` on a server that needs no credentials
    /// (where everyone may do everything).
    pub(super) fn principal(&self) -> Result<Option<&Principal>, ServerError> {
        if self.access.is_none() {
            return Ok(None);
        }
        match &self.principal {
            Some(principal) => Ok(Some(principal)),
            None => Err(ServerError::new(
                ErrorCode::Unauthenticated,
                "this server requires credentials: give a token (FLUVIO_TOKEN, or `token` in your profile in ~/.fluvio/config) or a client certificate",
            )),
        }
    }

    /// Refuses a principal that is not an admin.
    pub(super) fn require_admin(&self, kind: ApiKind) -> Result<(), ServerError> {
        match self.principal()? {
            Some(principal) if principal.role != Role::Admin => Err(ServerError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{:?} is a client; {kind:?} needs the admin role (ask an admin, or use an admin's token)",
                    principal.name
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a topic the principal may not use.
    pub(super) fn require_topic(&self, topic: &str) -> Result<(), ServerError> {
        match self.principal()? {
            Some(principal) if !principal.may_use_topic(topic) => Err(ServerError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{:?} may not use topic {topic:?}; its topics are {:?} (an admin grants more in the access file)",
                    principal.name, principal.topics
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a listing may show this topic to the principal (without
    /// building the refusal `require_topic` would send).
    pub(super) fn may_see(&self, topic: &str) -> bool {
        match self.principal() {
            Ok(None) => true,
            Ok(Some(principal)) => principal.may_use_topic(topic),
            Err(_) => false,
        }
    }

    /// Answers an `Authenticate` request; `Err` closes the connection.
    pub(super) fn authenticate(&mut self, request: AuthenticateRequest) -> Result<AuthenticateResponse, ServerError> {
        let Some(access) = &self.access else {
            return Ok(AuthenticateResponse { principal: String::new(), role: Role::Admin.name().to_string() });
        };
        match access.by_token(&request.token) {
            Some(principal) => {
                let response =
                    AuthenticateResponse { principal: principal.name.clone(), role: principal.role.name().to_string() };
                self.principal = Some(principal);
                Ok(response)
            }
            None => Err(ServerError::new(
                ErrorCode::Unauthenticated,
                "the token is not known to this server; check FLUVIO_TOKEN or the `token` of your profile",
            )),
        }
    }
}
