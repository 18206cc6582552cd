# Everything deploy/k8s/overlays/production and the Secret licensed-secrets
# need. Sensitive values: `tofu output -raw NAME`.

output "gke_cluster" {
  description = "gcloud container clusters get-credentials <name> --region <location>."
  value       = { name = module.gke.cluster_name, location = module.gke.location }
}

output "gsa_email" {
  description = "Annotation iam.gke.io/gcp-service-account of the KSA licensed."
  value       = module.iam.email
}

output "kms_key_name" {
  description = "KMS_KEY_NAME."
  value       = module.kms.key_name
}

output "kms_key_version" {
  description = "KMS_KEY_VERSION at first deployment (version 1)."
  value       = module.kms.initial_key_version
}

output "auth_jwks_url" {
  description = "AUTH_JWKS_URL."
  value       = module.identity_platform.auth_jwks_url
}

output "auth_issuer" {
  description = "AUTH_ISSUER."
  value       = module.identity_platform.auth_issuer
}

output "auth_audience" {
  description = "AUTH_AUDIENCE."
  value       = module.identity_platform.auth_audience
}

output "tenant_ids" {
  description = "Identity Platform tenant ids (firebase.tenant) by key."
  value       = module.identity_platform.tenant_ids
}

output "token_issuer" {
  description = "TOKEN_ISSUER suggestion: the public URL of the API."
  value       = "https://${var.domain}"
}

output "database_url" {
  description = "DATABASE_URL (Secret licensed-secrets)."
  value       = module.cloudsql.database_url
  sensitive   = true
}

output "cloudsql_instance" {
  description = "Cloud SQL instance name (backups, point-in-time recovery)."
  value       = module.cloudsql.instance_name
}

output "redis_url" {
  description = "REDIS_URL (Secret licensed-secrets)."
  value       = module.memorystore.redis_url
  sensitive   = true
}

output "redis_server_ca_pem" {
  description = "CA certificate of Memorystore's TLS endpoint."
  value       = module.memorystore.server_ca_pem
  sensitive   = true
}

output "private_services_cidr" {
  description = "Range of Cloud SQL and Memorystore addresses (NetworkPolicy egress)."
  value       = module.network.private_services_cidr
}

output "image_repository" {
  description = "Image name for `kustomize edit set image licensed=<this>@sha256:...`."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/licensed"
}

output "ingress_ip_name" {
  description = "Global static IP name (Ingress annotation kubernetes.io/ingress.global-static-ip-name)."
  value       = google_compute_global_address.ingress.name
}

output "ingress_ip_address" {
  description = "The address to point the domain's DNS A record at."
  value       = google_compute_global_address.ingress.address
}

output "ssl_certificate_name" {
  description = "Google-managed certificate name (Ingress annotation ingress.gcp.kubernetes.io/pre-shared-cert)."
  value       = google_compute_managed_ssl_certificate.ingress.name
}
