# Identity Platform: the issuer of the user JWTs the API accepts
# (AUTH_ISSUER=https://securetoken.google.com/<project>,
# AUTH_AUDIENCE=<project>). Users sign in with Google or GitHub. With
# multi-tenancy, each tenant's tokens carry firebase.tenant, which the
# service maps to its tenant.
#
# Strangers stay out: user sign-up is disabled for the project and for every
# tenant (client.permissions.disabled_user_signup). Anyone can complete a
# Google or GitHub login, but no Identity Platform account - and so no token
# with a firebase.tenant claim - is created for them. Only the vendor's
# admins create accounts, with the Admin SDK, in the customer's tenant
# (docs/deployment.md, "Admitting a customer's users"). Users cannot delete
# their own accounts either (the audit names them).

resource "google_identity_platform_config" "this" {
  project                    = var.project_id
  authorized_domains         = var.authorized_domains
  autodelete_anonymous_users = true

  sign_in {
    allow_duplicate_emails = false

    anonymous {
      enabled = false
    }

    email {
      enabled           = false
      password_required = true
    }
  }

  multi_tenant {
    allow_tenants = var.multi_tenant
  }

  # Project-level users: none sign up by themselves.
  client {
    permissions {
      disabled_user_signup   = true
      disabled_user_deletion = true
    }
  }
}

resource "google_identity_platform_default_supported_idp_config" "google" {
  project       = var.project_id
  idp_id        = "google.com"
  client_id     = var.google_client_id
  client_secret = var.google_client_secret
  enabled       = true

  depends_on = [google_identity_platform_config.this]
}

resource "google_identity_platform_default_supported_idp_config" "github" {
  project       = var.project_id
  idp_id        = "github.com"
  client_id     = var.github_client_id
  client_secret = var.github_client_secret
  enabled       = true

  depends_on = [google_identity_platform_config.this]
}

# Tenants (only with multi_tenant = true), each with the same two providers.
resource "google_identity_platform_tenant" "this" {
  for_each                 = var.multi_tenant ? var.tenants : {}
  project                  = var.project_id
  display_name             = each.value
  allow_password_signup    = false
  disable_auth             = false
  enable_email_link_signin = false

  # Tenant users: accounts exist only when an admin creates them.
  client {
    permissions {
      disabled_user_signup   = true
      disabled_user_deletion = true
    }
  }

  depends_on = [google_identity_platform_config.this]
}

resource "google_identity_platform_tenant_default_supported_idp_config" "google" {
  for_each      = google_identity_platform_tenant.this
  project       = var.project_id
  tenant        = each.value.name
  idp_id        = "google.com"
  client_id     = var.google_client_id
  client_secret = var.google_client_secret
  enabled       = true
}

resource "google_identity_platform_tenant_default_supported_idp_config" "github" {
  for_each      = google_identity_platform_tenant.this
  project       = var.project_id
  tenant        = each.value.name
  idp_id        = "github.com"
  client_id     = var.github_client_id
  client_secret = var.github_client_secret
  enabled       = true
}
