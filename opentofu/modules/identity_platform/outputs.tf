output "auth_issuer" {
  description = "AUTH_ISSUER for the service: the `iss` of Identity Platform ID tokens."
  value       = "https://securetoken.google.com/${var.project_id}"
}

output "auth_audience" {
  description = "AUTH_AUDIENCE for the service: the `aud` of Identity Platform ID tokens (the project id)."
  value       = var.project_id
}

output "auth_jwks_url" {
  description = "AUTH_JWKS_URL for the service: the public keys that sign Identity Platform ID tokens."
  value       = "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com"
}

output "tenant_ids" {
  description = "Tenant ids by key (the value of firebase.tenant in their users' tokens)."
  value       = { for k, t in google_identity_platform_tenant.this : k => element(split("/", t.name), length(split("/", t.name)) - 1) }
}
