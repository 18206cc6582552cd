//! The claims of a user JWT and how they become a [`Caller`].
//!
//! Owns the mapping from claims to identity: user = `sub`, tenant =
//! `firebase.tenant` when Identity Platform names one (a `tenant_id` claim
//! must then agree), else `tenant_id`, admin
//! = `roles` contains [`ADMIN_ROLE`]. Formats follow `events::ids`
//! (`TenantId`, `UserId`), so a verified caller's ids always parse there.
//!
//! Must not: check signatures or time claims (that is [`super::Authenticator`]),
//! and must not echo claim values into error messages.

use events::ids::{GroupId, IdError, TenantId, UserId};
use serde::Deserialize;

/// The role (in the `roles` claim) of a tenant's license admin: it manages
/// the tenant's sessions and reads its usage.
pub const ADMIN_ROLE: &str = "license-admin";

/// The role (in the `roles` claim) of the vendor: it alone issues licenses
/// and changes their seats, policies and suspension.
pub const VENDOR_ROLE: &str = "license-vendor";

/// An authenticated caller: who it is, which tenant it acts in, and whether
/// it may use the admin routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user (the token's `sub`); 1..=256 characters without control characters.
    pub user_id: String,
    /// The tenant (`tenant_id`, else `firebase.tenant`); 1..=64 of `[A-Za-z0-9_-]`.
    pub tenant_id: String,
    /// Whether `roles` contains [`ADMIN_ROLE`].
    pub is_admin: bool,
    /// Whether `roles` contains [`VENDOR_ROLE`].
    pub is_vendor: bool,
    /// The `groups` claim (for seat reservations); each a valid `GroupId`.
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller's tenant as a typed id (always `Ok` for a verified caller).
    pub fn tenant(&self) -> Result<TenantId, IdError> {
        TenantId::parse(&self.tenant_id)
    }

    /// The caller's groups as typed ids (always `Ok` for a verified caller).
    pub fn groups(&self) -> Result<Vec<GroupId>, IdError> {
        self.groups.iter().map(|g| GroupId::parse(g)).collect()
    }

    /// The caller's user as a typed id (always `Ok` for a verified caller).
    pub fn user(&self) -> Result<UserId, IdError> {
        UserId::parse(&self.user_id)
    }
}

/// Why verified claims do not make a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// No `sub` claim.
    #[error("token carries no subject (sub)")]
    MissingSubject,
    /// `sub` is empty, too long or has control characters.
    #[error("token subject (sub) must be 1 to 256 characters without control characters")]
    InvalidSubject,
    /// Neither `tenant_id` nor `firebase.tenant`.
    #[error("token carries no tenant")]
    MissingTenant,
    /// The tenant claim has the wrong format.
    #[error("token tenant must be 1 to 64 characters of A-Z a-z 0-9 _ -")]
    InvalidTenant,
    /// `tenant_id` and the identity provider's `firebase.tenant` disagree.
    #[error("token names two different tenants (tenant_id and firebase.tenant)")]
    ConflictingTenants,
    /// `roles` is neither a string nor an array of strings.
    #[error("token roles claim must be an array of strings")]
    InvalidRoles,
    /// `groups` is not a string or an array of at most [`MAX_GROUPS`]
    /// strings of 1..=128 characters without control characters.
    #[error("token groups claim must be an array of at most 256 names of 1 to 128 characters")]
    InvalidGroups,
}

/// Most groups a token may name.
pub const MAX_GROUPS: usize = 256;

/// The non-registered claims we read. Registered claims (`iss`, `aud`,
/// `exp`, `nbf`) are checked by `jsonwebtoken` before this is used.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserClaims {
    #[serde(default)]
    pub(crate) sub: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) tenant_id: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) firebase: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) roles: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) groups: Option<serde_json::Value>,
    /// Expiry (validated by jsonwebtoken; kept to bound the verified-token cache).
    #[serde(default)]
    pub(crate) exp: Option<serde_json::Value>,
}

/// A tenant claim, if present (not null), checked on its own.
fn checked(v: Option<&serde_json::Value>) -> Result<Option<&str>, ClaimsError> {
    match v.filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => {
            let t = v.as_str().ok_or(ClaimsError::InvalidTenant)?;
            TenantId::parse(t).map_err(|_| ClaimsError::InvalidTenant)?;
            Ok(Some(t))
        }
    }
}

impl UserClaims {
    /// The tenant claim. The identity provider's `firebase.tenant` is
    /// authoritative when present: a custom `tenant_id` cannot override it,
    /// and a token whose two tenant claims disagree is refused. Without it,
    /// `tenant_id`.
    pub(crate) fn tenant(&self) -> Result<&str, ClaimsError> {
        // Each claim that is present must be well-formed on its own.
        let custom = checked(self.tenant_id.as_ref())?;
        let provider = checked(self.firebase.as_ref().and_then(|f| f.get("tenant")))?;
        match (custom, provider) {
            (Some(c), Some(p)) if c != p => Err(ClaimsError::ConflictingTenants),
            (_, Some(p)) => Ok(p),
            (Some(c), None) => Ok(c),
            (None, None) => Err(ClaimsError::MissingTenant),
        }
    }

    /// The `sub` claim, format-checked.
    pub(crate) fn subject(&self) -> Result<&str, ClaimsError> {
        let sub = match &self.sub {
            Some(v) if !v.is_null() => v.as_str().ok_or(ClaimsError::InvalidSubject)?,
            _ => return Err(ClaimsError::MissingSubject),
        };
        UserId::parse(sub).map_err(|_| ClaimsError::InvalidSubject)?;
        Ok(sub)
    }

    /// Whether `roles` holds `wanted`. A single string is accepted as a
    /// one-element list; any other shape is rejected rather than ignored.
    fn has_role(&self, wanted: &str) -> Result<bool, ClaimsError> {
        match &self.roles {
            None | Some(serde_json::Value::Null) => Ok(false),
            Some(serde_json::Value::String(role)) => Ok(role == wanted),
            Some(serde_json::Value::Array(roles)) => {
                let mut found = false;
                for role in roles {
                    found |= role.as_str().ok_or(ClaimsError::InvalidRoles)? == wanted;
                }
                Ok(found)
            }
            Some(_) => Err(ClaimsError::InvalidRoles),
        }
    }

    /// The `groups` claim: a single string is a one-element list; any
    /// other shape, or a malformed name, is rejected rather than ignored.
    fn groups(&self) -> Result<Vec<String>, ClaimsError> {
        let names: Vec<&serde_json::Value> = match &self.groups {
            None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
            Some(one @ serde_json::Value::String(_)) => vec![one],
            Some(serde_json::Value::Array(many)) if many.len() <= MAX_GROUPS => {
                many.iter().collect()
            }
            Some(_) => return Err(ClaimsError::InvalidGroups),
        };
        names
            .into_iter()
            .map(|v| {
                let name = v.as_str().ok_or(ClaimsError::InvalidGroups)?;
                GroupId::parse(name).map_err(|_| ClaimsError::InvalidGroups)?;
                Ok(name.to_owned())
            })
            .collect()
    }

    /// Turns (already verified) claims into a caller.
    pub(crate) fn into_caller(self) -> Result<Caller, ClaimsError> {
        Ok(Caller {
            user_id: self.subject()?.to_owned(),
            tenant_id: self.tenant()?.to_owned(),
            is_admin: self.has_role(ADMIN_ROLE)?,
            is_vendor: self.has_role(VENDOR_ROLE)?,
            groups: self.groups()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(claims: serde_json::Value) -> Result<Caller, ClaimsError> {
        serde_json::from_value::<UserClaims>(claims)
            .unwrap()
            .into_caller()
    }

    #[test]
    fn a_custom_tenant_claim_cannot_override_the_providers() {
        let conflicting = json!({"sub": "u1", "tenant_id": "a", "firebase": {"tenant": "b"}});
        assert!(matches!(
            caller(conflicting),
            Err(ClaimsError::ConflictingTenants)
        ));
        let agreeing = json!({"sub": "u1", "tenant_id": "b", "firebase": {"tenant": "b"}});
        let c = caller(agreeing).unwrap();
        assert_eq!(c.tenant_id, "b");
        assert!(!c.is_admin);
    }

    #[test]
    fn groups_are_read_and_checked() {
        let c = caller(json!({"sub": "u", "tenant_id": "t", "groups": ["cad", "ops"]})).unwrap();
        assert_eq!(c.groups, ["cad", "ops"]);
        let c = caller(json!({"sub": "u", "tenant_id": "t", "groups": "cad"})).unwrap();
        assert_eq!(c.groups, ["cad"]);
        assert!(caller(json!({"sub": "u", "tenant_id": "t"}))
            .unwrap()
            .groups
            .is_empty());
        for bad in [
            json!([1]),
            json!({"a": 1}),
            json!([""]),
            json!(["a\nb"]),
            json!(vec!["g"; 257]),
        ] {
            let e = caller(json!({"sub": "u", "tenant_id": "t", "groups": bad})).unwrap_err();
            assert_eq!(e, ClaimsError::InvalidGroups);
        }
    }

    #[test]
    fn firebase_tenant_is_the_fallback() {
        let c = caller(json!({"sub": "u1", "firebase": {"tenant": "t1"}})).unwrap();
        assert_eq!(c.tenant_id, "t1");
    }

    #[test]
    fn the_vendor_role_is_its_own() {
        let c = caller(json!({"sub": "u", "tenant_id": "t", "roles": [VENDOR_ROLE]})).unwrap();
        assert!(c.is_vendor && !c.is_admin);
        let c = caller(json!({"sub": "u", "tenant_id": "t", "roles": ADMIN_ROLE})).unwrap();
        assert!(!c.is_vendor && c.is_admin);
    }

    #[test]
    fn admin_role_is_read_from_roles() {
        let c = caller(json!({"sub": "u", "tenant_id": "t", "roles": ["x", ADMIN_ROLE]})).unwrap();
        assert!(c.is_admin);
        let c = caller(json!({"sub": "u", "tenant_id": "t", "roles": ADMIN_ROLE})).unwrap();
        assert!(c.is_admin);
        let e = caller(json!({"sub": "u", "tenant_id": "t", "roles": [1]})).unwrap_err();
        assert_eq!(e, ClaimsError::InvalidRoles);
    }

    #[test]
    fn malformed_identities_are_rejected() {
        let cases = [
            (json!({"tenant_id": "t"}), ClaimsError::MissingSubject),
            (
                json!({"sub": "", "tenant_id": "t"}),
                ClaimsError::InvalidSubject,
            ),
            (
                json!({"sub": "a\nb", "tenant_id": "t"}),
                ClaimsError::InvalidSubject,
            ),
            (
                json!({"sub": "x".repeat(257), "tenant_id": "t"}),
                ClaimsError::InvalidSubject,
            ),
            (
                json!({"sub": 7, "tenant_id": "t"}),
                ClaimsError::InvalidSubject,
            ),
            (json!({"sub": "u"}), ClaimsError::MissingTenant),
            (
                json!({"sub": "u", "tenant_id": "a b"}),
                ClaimsError::InvalidTenant,
            ),
            (
                json!({"sub": "u", "tenant_id": "t".repeat(65)}),
                ClaimsError::InvalidTenant,
            ),
            (
                json!({"sub": "u", "tenant_id": "", "firebase": {"tenant": "ok"}}),
                ClaimsError::InvalidTenant,
            ),
            (
                json!({"sub": "u", "firebase": {"tenant": 3}}),
                ClaimsError::InvalidTenant,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(caller(claims.clone()).unwrap_err(), expected, "{claims}");
        }
    }
}
