# Everything deploy/k8s/overlays/production and the Secret licensed-secrets
# need. Sensitive values: `tofu output -raw NAME`.

output "gke_cluster" {
  description = "gcloud container clusters get-credentials <name> --region <location>."
  value       = { name = module.gke.cluster_name, location = module.gke.location }
}

output "gsa_emails" {
  description = "Annotation iam.gke.io/gcp-service-account of each KSA licensed-<workload>, by workload."
  value       = module.iam.emails
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
  description = "DATABASE_URL of the app user (Secret licensed-secrets): verify-full TLS, sslrootcert=/etc/licensed/tls/postgres-ca.pem."
  value       = module.cloudsql.database_url
  sensitive   = true
}

output "migrate_database_url" {
  description = "DATABASE_URL of the migration user (Secret licensed-migrate-secrets, read only by the migrate Job)."
  value       = module.cloudsql.migrate_database_url
  sensitive   = true
}

output "db_app_user" {
  description = "The app user: DB_APP_USER in the ConfigMap (the migrate Job grants it ledger_writer)."
  value       = module.cloudsql.app_user
}

output "postgres_server_ca_pem" {
  description = "CA bundle of Cloud SQL's server certificate (Secret licensed-tls, key postgres-ca.pem)."
  value       = module.cloudsql.server_ca_pem
}

output "cloudsql_dns_name" {
  description = "DNS name of the Cloud SQL instance (host of DATABASE_URL, resolved by a private zone)."
  value       = module.cloudsql.dns_name
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
  description = "CA certificates of Memorystore's TLS endpoint (Secret licensed-tls, key redis-ca.pem)."
  value       = module.memorystore.server_ca_pem
  sensitive   = true
}

output "checkpoint_bucket" {
  description = "Checkpoint bucket: bucketName of the signer's Cloud Storage FUSE volume (deploy/k8s/overlays/production/kustomization.yaml)."
  value       = module.checkpoints.bucket_name
}

output "checkpoint_retention_days" {
  description = "Locked retention of the checkpoint bucket, days."
  value       = module.checkpoints.retention_days
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
