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

output "database_url" {
  description = "DATABASE_URL for the service (goes into the Kubernetes Secret licensed-secrets). TLS is required by the server."
  value       = "postgres://${google_sql_user.licensed.name}:${random_password.licensed.result}@${google_sql_database_instance.this.private_ip_address}:5432/${google_sql_database.this.name}?sslmode=require"
  sensitive   = true
}
