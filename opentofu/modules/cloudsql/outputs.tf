output "instance_name" {
  description = "Instance name (for backups and point-in-time recovery with gcloud)."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "PROJECT:REGION:INSTANCE."
  value       = google_sql_database_instance.this.connection_name
}

output "private_ip" {
  description = "Private IP address of the instance."
  value       = google_sql_database_instance.this.private_ip_address
}

output "dns_name" {
  description = "DNS name of the instance (in its server certificate; resolved by the private zone to the private IP). The host of DATABASE_URL."
  value       = local.dns_name
}

output "server_ca_pem" {
  description = "PEM bundle of the CAs that sign the instance's server certificate (Secret licensed-tls, key postgres-ca.pem)."
  value       = join("", [for c in data.google_sql_ca_certs.this.certs : c.cert])
}

output "app_user" {
  description = "Login role of every workload but migrate; the migrate Job grants it ledger_writer (licensed migrate --grant-writer <this>)."
  value       = google_sql_user.licensed.name
}

output "migrate_user" {
  description = "Login role of the migrate Job only."
  value       = google_sql_user.migrate.name
}

output "database_url" {
  description = "DATABASE_URL of the app user (Secret licensed-secrets): verify-full TLS against the instance's DNS name with the CA bundle at ca_file_path."
  value       = "postgres://${google_sql_user.licensed.name}:${random_password.licensed.result}${local.url_tail}"
  sensitive   = true
}

output "migrate_database_url" {
  description = "DATABASE_URL of the migration user (Secret licensed-migrate-secrets, read only by the migrate Job)."
  value       = "postgres://${google_sql_user.migrate.name}:${random_password.migrate.result}${local.url_tail}"
  sensitive   = true
}
